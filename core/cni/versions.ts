// CNI spec versions danm speaks. Kept free of imports: the thin `danm` client answers VERSION with it
// without loading Effect.
export const supportedVersions = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = typeof supportedVersions[number];
export const latestVersion: CniVersion = "1.1.0";

/** Where the node daemon listens unless DANM_SOCKET says otherwise. */
export const defaultDaemonSocket = "/run/danm/danm.sock";
