// Address tickets: how a delegate starts before danm's IPAM has answered. A delegate's process start (plugin, then
// the fakeipam client it execs) takes longer than a reservation, so ADD runs both at once: the delegate gets a
// fakeipam section holding a ticket instead of addresses, and the daemon answers that fakeipam call once the
// reservation is made — or with its failure, so the delegate gives up (and is rolled back) without ever
// configuring an address danm did not reserve. Where the daemon hands the addresses to the reference `static` IPAM
// plugin instead of fakeipam (attach/ipamhandoff.ts), it redeems the ticket itself before execing the delegate: the
// delegate's preparation still overlaps the reservation, its process start no longer does.
import { Deferred, Effect } from "effect";

export interface Ticket {
  /** Unguessable: goes into the delegate's configuration. */
  readonly id: string;
  /** The reserved addresses ("10.0.0.5/24" …): every redeemer gets them. */
  readonly fulfil: (addresses: ReadonlyArray<string>) => Effect.Effect<void>;
  /** Why there are no addresses: every redeemer gets it as its error. */
  readonly reject: (reason: string) => Effect.Effect<void>;
}

export interface AddressTickets {
  /** A ticket valid while `use` runs; a redeemer still waiting when it ends is told that the attachment ended. */
  readonly withTicket: <A, E, R>(use: (t: Ticket) => Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>;
  /** The addresses of ticket `id` once known; a failure (rejected, unknown, expired, timed out) as a reason. */
  readonly redeem: (id: string, timeoutMs: number) => Effect.Effect<ReadonlyArray<string>, string>;
}

export const makeAddressTickets = (): AddressTickets => {
  const open = new Map<string, Deferred.Deferred<ReadonlyArray<string>, string>>();
  return {
    withTicket: (use) =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          const id = crypto.randomUUID();
          const done = Deferred.makeUnsafe<ReadonlyArray<string>, string>();
          open.set(id, done);
          return { id, done };
        }),
        ({ id, done }) =>
          use({
            id,
            fulfil: (addresses) => Effect.asVoid(Deferred.succeed(done, addresses)),
            reject: (reason) => Effect.asVoid(Deferred.fail(done, reason)),
          }),
        ({ id, done }) =>
          Effect.sync(() => open.delete(id)).pipe(
            Effect.andThen(Deferred.fail(done, "the attachment ended before its addresses were reserved")),
          ),
      ),
    redeem: (id, timeoutMs) =>
      Effect.suspend(() => {
        const done = open.get(id);
        if (!done) return Effect.fail(`no address reservation is pending under ticket ${id}`);
        return Deferred.await(done).pipe(
          Effect.timeoutOrElse({
            duration: `${timeoutMs} millis`,
            orElse: () => Effect.fail(`the address reservation was not made within ${timeoutMs} ms`),
          }),
        );
      }),
  };
};
