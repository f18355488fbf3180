// The page side of TestIntegrationBrowserLiveKitE2EE: LiveKit's client SDK (livekit-client)
// publishing Chromium's fake camera and microphone with end-to-end encryption, through
// its ExternalE2EEKeyProvider and its own E2EE worker, as Element Call's media path does.
// The Matrix side (membership, token, key distribution) is the Go test's.
import { BaseKeyProvider, ExternalE2EEKeyProvider, Room, RoomEvent } from "livekit-client";

const log = (...args) => console.log("[harness]", ...args);

let room = null;
let setLocalKey = null;

// ParticipantKeyProvider keeps a key per participant and key index, with the options Element
// Call's own provider uses (a ratchet window of 10 and a ring of 256 indexes): the key index
// in each frame's trailer is the one of the latest key set.
class ParticipantKeyProvider extends BaseKeyProvider {
    constructor() {
        super({ ratchetWindowSize: 10, keyringSize: 256 });
    }

    async setParticipantKey(rawKey, identity, index) {
        const material = await crypto.subtle.importKey("raw", rawKey, "HKDF", false, ["deriveBits", "deriveKey"]);
        this.onSetEncryptionKey(material, identity, index);
    }
}
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
    // provider "external" is the SDK's ExternalE2EEKeyProvider (one shared key, index 0);
    // "participant" a per-participant provider as Element Call's, keyed with keyIndex.
    async connect({ url, token, key, keyIndex, provider, rawAudio }) {
        let keyProvider;
        if (provider === "participant") {
            keyProvider = new ParticipantKeyProvider();
            // The local identity is known once connected; until then the key waits here.
            setLocalKey = async (raw, index) => keyProvider.setParticipantKey(raw, room.localParticipant.identity, index);
        } else {
            keyProvider = new ExternalE2EEKeyProvider();
            setLocalKey = async (raw, index) => {
                if (index !== 0) throw new Error("ExternalE2EEKeyProvider sets index 0 only");
                await keyProvider.setKey(raw);
            };
        }
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
        if (provider !== "participant") await setLocalKey(fromBase64(key), keyIndex ?? 0);
        await room.setE2EEEnabled(true);
        await room.connect(url, token);
        if (provider === "participant") await setLocalKey(fromBase64(key), keyIndex ?? 0);
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

    // setKey makes key (base64) the local participant's key at index: frames are encrypted
    // with it from now on (a rotation, after the key went to every member).
    async setKey({ key, keyIndex }) {
        await setLocalKey(fromBase64(key), keyIndex);
    },

    async disconnect() {
        await room?.disconnect();
    },
};

log("ready");
