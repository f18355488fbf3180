// login.js: the login both matrix-js-sdk pages do (matrixcall, rtcsession): a password
// login as a fresh device, the rust crypto on IndexedDB when asked (as Element Web sets it
// up), and the first sync.
import * as sdk from "matrix-js-sdk";

// login returns the started client and the login response; the first sync must finish
// within syncTimeoutMs.
export async function login({ homeserver, user, password, device, encryption, syncTimeoutMs, log }) {
    const anon = sdk.createClient({ baseUrl: homeserver });
    const resp = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: device,
    });
    const client = sdk.createClient({
        baseUrl: homeserver,
        userId: resp.user_id,
        accessToken: resp.access_token,
        deviceId: resp.device_id,
    });
    if (encryption) {
        await client.initRustCrypto({ useIndexedDB: true });
    }
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") resolve();
            if (state === "ERROR") log("sync error", data?.error?.message);
        });
        setTimeout(() => reject(new Error(`first sync did not finish in ${syncTimeoutMs / 1000} s`)), syncTimeoutMs);
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    return { client, resp };
}
