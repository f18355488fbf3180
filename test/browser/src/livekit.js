// The page side of TestIntegrationBrowserLiveKitE2EE: LiveKit's client SDK (livekit-client)
// publishing Chromium's fake camera and microphone with end-to-end encryption, through
// its ExternalE2EEKeyProvider and its own E2EE worker, as Element Call's media path does.
// The Matrix side (membership, token, key distribution) is the Go test's.
import { ExternalE2EEKeyProvider, Room, RoomEvent } from "livekit-client";

const log = (...args) => console.log("[harness]", ...args);

let room = null;
const seen = { encryptionErrors: [], states: [] };

function fromBase64(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
}

window.harness = {
    // connect joins the LiveKit room with token, turns E2EE on with the raw key (base64; an
    // ArrayBuffer key is HKDF key material, as Element Call's keys are) and publishes the
    // fake camera and microphone.
    // rawAudio turns the browser's voice processing off, so a test tone arrives as sent.
    async connect({ url, token, key, rawAudio }) {
        const keyProvider = new ExternalE2EEKeyProvider();
        const worker = new Worker(new URL("./e2ee-worker.js", import.meta.url), { type: "module" });
        const audioCaptureDefaults = rawAudio ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : {};
        room = new Room({ e2ee: { keyProvider, worker }, adaptiveStream: false, dynacast: false, audioCaptureDefaults });
        room.on(RoomEvent.EncryptionError, (err) => {
            seen.encryptionErrors.push(String(err?.message ?? err));
            log("encryption error", err?.message ?? err);
        });
        room.on(RoomEvent.ConnectionStateChanged, (s) => {
            seen.states.push(s);
            log("connection state", s);
        });
        await keyProvider.setKey(fromBase64(key));
        await room.setE2EEEnabled(true);
        await room.connect(url, token);
        await room.localParticipant.enableCameraAndMicrophone();
        log("published as", room.localParticipant.identity, "in", room.name);
        return window.harness.status();
    },

    // status is what the SDK says about the connection and the published tracks.
    status() {
        const pubs = [...room.localParticipant.trackPublications.values()].map((p) => ({
            kind: p.kind,
            source: p.source,
            sid: p.trackSid,
            mimeType: p.mimeType ?? "",
            encryption: p.encryption,
            muted: p.isMuted,
        }));
        return {
            state: room.state,
            identity: room.localParticipant.identity,
            room: room.name,
            e2ee: room.isE2EEEnabled,
            publications: pubs,
            states: seen.states,
            encryptionErrors: seen.encryptionErrors,
        };
    },

    async disconnect() {
        await room?.disconnect();
    },
};

log("ready");
