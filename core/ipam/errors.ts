// Typed IPAM failures. Each names the network and, where one is involved, the address.
import { Schema } from "effect";

export class PoolExhausted extends Schema.TaggedError<PoolExhausted>()("PoolExhausted", {
  network: Schema.String,
  family: Schema.Literals([4, 6]),
}) {
  override get message() {
    return `network ${this.network}: no free IPv${this.family} address left in the allocation pool`;
  }
}

export class AddressInUse extends Schema.TaggedError<AddressInUse>()("AddressInUse", {
  network: Schema.String,
  address: Schema.String,
  holder: Schema.String,
}) {
  override get message() {
    return `network ${this.network}: address ${this.address} is already in use by ${this.holder}`;
  }
}

export class AddressNotAllowed extends Schema.TaggedError<AddressNotAllowed>()("AddressNotAllowed", {
  network: Schema.String,
  address: Schema.String,
  reason: Schema.String,
}) {
  override get message() {
    return `network ${this.network}: address ${this.address} cannot be reserved: ${this.reason}`;
  }
}

export class InvalidAddressRequest extends Schema.TaggedError<InvalidAddressRequest>()("InvalidAddressRequest", {
  network: Schema.String,
  field: Schema.String,
  value: Schema.String,
  reason: Schema.String,
}) {
  override get message() {
    return `network ${this.network}: ${this.field} "${this.value}" is invalid: ${this.reason}`;
  }
}

export class TooMuchContention extends Schema.TaggedError<TooMuchContention>()("TooMuchContention", {
  network: Schema.String,
  attempts: Schema.Number,
}) {
  override get message() {
    return `network ${this.network}: gave up after ${this.attempts} conflicting writes; retry later`;
  }
}

export class IpamStorageError extends Schema.TaggedError<IpamStorageError>()("IpamStorageError", {
  network: Schema.String,
  operation: Schema.String,
  cause: Schema.String,
}) {
  override get message() {
    return `network ${this.network}: ${this.operation} failed: ${this.cause}`;
  }
}

export type IpamError =
  | PoolExhausted
  | AddressInUse
  | AddressNotAllowed
  | InvalidAddressRequest
  | TooMuchContention
  | IpamStorageError;
