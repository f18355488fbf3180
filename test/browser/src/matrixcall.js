// The page side of TestIntegrationBrowserOneToOne: a real matrix-js-sdk client placing a
// legacy 1:1 call (MatrixCall) the way Element Web does. The Go test drives it through
// driver.mjs, which calls the functions on window.harness and relays the console.
import * as sdk from "matrix-js-sdk";

import { login } from "./login.js";
import { notices as roomNotices } from "./room.js";

const log = (...args) => console.log("[harness]", ...args);

let client = null;
let call = null;
const seen = { states: [], errors: [], hangups: [], feeds: [] };

function requireCall() {
    if (!call) throw new Error("no call placed yet");
    return call;
}

window.harness = {
    // login logs in with a password (a fresh device), sets up the rust crypto when asked
    // (IndexedDB store, as Element Web does) and waits for the first sync.
    async login({ homeserver, user, password, encryption }) {
        let resp;
        ({ client, resp } = await login({
            homeserver, user, password, encryption,
            device: "headless Chromium (matrix-js-sdk)", syncTimeoutMs: 30000, log,
        }));
        log("logged in", resp.user_id, resp.device_id, "crypto:", !!client.getCrypto());
        return { userId: resp.user_id, deviceId: resp.device_id, voip: client.supportsVoip() };
    },

    // membership is what the client's own sync says about user in room ("" when unknown).
    membership(roomId, userId) {
        const room = client.getRoom(roomId);
        return room?.getMember(userId)?.membership ?? "";
    },

    // encrypted says whether the client treats room as encrypted.
    async encrypted(roomId) {
        return (await client.getCrypto()?.isEncryptionEnabledInRoom(roomId)) ?? false;
    },

    // notices lists the m.notice bodies in room's live timeline and the events that could
    // not be decrypted (room.js).
    notices(roomId) {
        return roomNotices(client, roomId);
    },

    // placeVideoCall places a camera+microphone call in room, as Element's call button does.
    // rawAudio turns the browser's voice processing off (Element's settings can), so a test
    // tone arrives as sent.
    async placeVideoCall(roomId, rawAudio) {
        if (rawAudio) {
            await client.getMediaHandler().setAudioSettings({ autoGainControl: false, echoCancellation: false, noiseSuppression: false });
        }
        call = sdk.createNewMatrixCall(client, roomId);
        if (!call) throw new Error("createNewMatrixCall returned null: this browser has no WebRTC for the SDK");
        call.on(sdk.CallEvent.State, (state, old) => {
            seen.states.push(state);
            log("call state", old, "->", state);
        });
        call.on(sdk.CallEvent.Error, (err) => {
            seen.errors.push(`${err.code}: ${err.message}`);
            log("call error", err.code, err.message);
        });
        call.on(sdk.CallEvent.Hangup, (c) => {
            seen.hangups.push(c.hangupReason ?? "");
            log("call hung up", c.hangupParty, c.hangupReason);
        });
        call.on(sdk.CallEvent.FeedsChanged, (feeds) => {
            seen.feeds.push(feeds.map((f) => `${f.isLocal() ? "local" : "remote"}:${f.purpose}`).join(","));
        });
        await call.placeVideoCall();
        log("invite sent for call", call.callId);
        return call.callId;
    },

    // callStatus is what the SDK says about the call so far.
    callStatus() {
        const c = requireCall();
        return {
            callId: c.callId,
            state: c.state,
            states: seen.states,
            errors: seen.errors,
            hangups: seen.hangups,
            hangupParty: c.hangupParty ?? "",
            hangupReason: c.hangupReason ?? "",
            screensharing: c.isScreensharing(),
            opponentSupportsMetadata: c.opponentSupportsSDPStreamMetadata(),
        };
    },

    // screenshare starts or stops a screenshare through the SDK (getDisplayMedia and an
    // m.call.negotiate). It answers whether the SDK now shares the screen, and why not.
    async screenshare(enabled) {
        const c = requireCall();
        if (enabled) {
            // Ask the browser first, so the test can tell "headless cannot capture" from an
            // SDK or signalling failure.
            try {
                const probe = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
                const settings = probe.getVideoTracks()[0]?.getSettings() ?? {};
                probe.getTracks().forEach((t) => t.stop());
                log("getDisplayMedia works:", JSON.stringify(settings));
            } catch (err) {
                return { sharing: false, reason: `getDisplayMedia failed: ${err.name}: ${err.message}` };
            }
        }
        const sharing = await c.setScreensharingEnabled(enabled);
        return { sharing, reason: sharing === enabled ? "" : "the SDK did not change the screenshare" };
    },

    // hangup ends the call as the user's hang-up button does.
    hangup() {
        requireCall().hangup("user_hangup", false);
    },

    async stop() {
        client?.stopClient();
    },
};

log("ready");
