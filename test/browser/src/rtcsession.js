// The page side of TestIntegrationBrowserMatrixRTC: one Element Call participant made of the
// code Element Call runs, wired the way Element Call wires it (its "compatibility" mode, the
// default): matrix-js-sdk's MatrixRTCSession joins the room's call with its own
// MembershipManager (a session membership state event) and RTCEncryptionManager (a media key
// per participant, sent Olm-encrypted to every member device with ToDeviceKeyTransport,
// rotated when members come and go), and livekit-client publishes the fake camera and
// microphone with end-to-end encryption through its own E2EE worker, keyed by the session's
// EncryptionKeyChanged events. The LiveKit token comes from the focus' JWT service as
// Element Call asks for the SFU it publishes on (POST /sfu/get with an OpenID token).
// The Go test drives it through driver.mjs, which calls the functions on window.harness.
import { MatrixRTCSessionEvent } from "matrix-js-sdk/lib/matrixrtc/index.js";
import { BaseKeyProvider, Room, RoomEvent, VideoPresets } from "livekit-client";

import { login } from "./login.js";
import { notices as roomNotices } from "./room.js";

const log = (...args) => console.log("[harness]", ...args);

let client = null;
let session = null;
let lkRoom = null;
const seen = {
    // Every key the session handed to the media layer: own ones (when they are used) and
    // other members' (when they arrived).
    keys: [],
    memberships: [],
    notifications: [],
    sessionErrors: [],
    encryptionErrors: [],
    states: [],
};

// SessionKeyProvider is livekit-client's key provider fed by the session, with the options
// Element Call's own provider uses: every key is raw HKDF material for one LiveKit identity
// and index, a ratchet window of 10 and a ring of 256 indexes.
class SessionKeyProvider extends BaseKeyProvider {
    constructor() {
        super({ ratchetWindowSize: 10, keyringSize: 256 });
    }

    attach(rtcSession) {
        rtcSession.on(MatrixRTCSessionEvent.EncryptionKeyChanged, (key, index, membership, identity) => {
            const own = membership.userId === client.getUserId() && membership.deviceId === client.getDeviceId();
            seen.keys.push({ userId: membership.userId, deviceId: membership.deviceId, index, identity, own, at: Date.now() });
            log("media key", own ? "(own)" : "(received)", membership.userId, membership.deviceId, "index", index, "for identity", identity);
            crypto.subtle.importKey("raw", key, "HKDF", false, ["deriveBits", "deriveKey"]).then(
                (material) => this.onSetEncryptionKey(material, identity, index),
                (err) => log("could not import a media key:", err),
            );
        });
        rtcSession.reemitEncryptionKeys();
    }
}

function requireSession() {
    if (!session || !lkRoom) throw new Error("not in a call");
}

window.harness = {
    // login logs in with a password (a fresh device), sets up the rust crypto (IndexedDB
    // store, as Element Web and Element Call do) and waits for the first sync.
    async login({ homeserver, user, password }) {
        let resp;
        ({ client, resp } = await login({
            homeserver, user, password, encryption: true,
            device: "headless Chromium (MatrixRTC)", syncTimeoutMs: 60000, log,
        }));
        log("logged in", resp.user_id, resp.device_id);
        return { userId: resp.user_id, deviceId: resp.device_id };
    },

    // room says what the client's own sync knows of a room: who is joined and whether the
    // client encrypts in it.
    async room(roomId) {
        const room = client.getRoom(roomId);
        if (!room) return { joined: [], encrypted: false };
        return {
            joined: room.getJoinedMembers().map((m) => m.userId),
            encrypted: (await client.getCrypto()?.isEncryptionEnabledInRoom(roomId)) ?? false,
        };
    },

    // joinCall joins the room's call as Element Call does: the session (membership, keys)
    // first, then the SFU of serviceUrl with E2EE, publishing the fake camera (unless
    // callIntent is "audio") and microphone. notificationType "ring" makes the session ring
    // the room when it is the call's first member (Element X's DM calls).
    // rawAudio turns the browser's voice processing off, so a test tone arrives as sent.
    async joinCall({ roomId, serviceUrl, notificationType, callIntent, rawAudio }) {
        const room = client.getRoom(roomId);
        if (!room) throw new Error(`the client does not know room ${roomId}`);
        session = client.matrixRTC.getRoomSession(room);
        session.on(MatrixRTCSessionEvent.MembershipsChanged, (_old, now) => {
            const list = now.map((m) => `${m.userId}|${m.deviceId}`);
            seen.memberships.push({ at: Date.now(), members: list });
            log("call members:", list.join(", "));
        });
        session.on(MatrixRTCSessionEvent.DidSendCallNotification, (n) => {
            seen.notifications.push(n);
            log("sent call notification", JSON.stringify(n));
        });
        session.on(MatrixRTCSessionEvent.MembershipManagerError, (err) => {
            seen.sessionErrors.push(String(err?.message ?? err));
            log("membership manager error", err);
        });
        const keyProvider = new SessionKeyProvider();
        keyProvider.attach(session);

        const userId = client.getUserId();
        const deviceId = client.getDeviceId();
        // Element Call makes a fresh member id per call (used only by sticky memberships).
        const memberId = crypto.randomUUID();
        // Compatibility mode: multi-SFU, its own transport as the active focus, with the
        // Matrix room id as livekit_alias for older clients.
        const transport = { type: "livekit", livekit_service_url: serviceUrl, livekit_alias: roomId };
        session.joinRTCSession({ userId, deviceId, memberId }, [], transport, {
            notificationType,
            callIntent,
            manageMediaKeys: true,
        });

        // The token for the SFU it publishes on: the legacy endpoint, so that its LiveKit
        // identity is "@user:server:DEVICE", what others expect of a state-event membership.
        const openIdToken = await client.getOpenIdToken();
        const resp = await fetch(serviceUrl.replace(/\/$/, "") + "/sfu/get", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ room: roomId, openid_token: openIdToken, device_id: deviceId }),
        });
        if (!resp.ok) throw new Error(`JWT service: ${resp.status} ${await resp.text()}`);
        const { url, jwt } = await resp.json();

        const worker = new Worker(new URL("./e2ee-worker.js", import.meta.url), { type: "module" });
        const raw = rawAudio ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : {};
        // Element Call's publish defaults: VP8 with simulcast, Opus with DTX, no RED (it
        // breaks with E2EE), adaptive stream and dynacast. The camera is captured at 360p
        // (Element Call asks for 720p) to spare the test machine's CPU.
        lkRoom = new Room({
            e2ee: { keyProvider, worker },
            adaptiveStream: true,
            dynacast: true,
            audioCaptureDefaults: raw,
            videoCaptureDefaults: { resolution: VideoPresets.h360.resolution },
            publishDefaults: {
                dtx: true,
                red: false,
                simulcast: true,
                videoCodec: "vp8",
                videoSimulcastLayers: [VideoPresets.h180, VideoPresets.h360],
                stopMicTrackOnMute: false,
            },
        });
        // The E2EE worker names the reason (CryptorErrorReason) at the start of the message.
        // Frames of a participant whose key has not arrived yet are "MissingKey", as they
        // are in Element Call whenever media is faster than the to-device key.
        lkRoom.on(RoomEvent.EncryptionError, (err, participant) => {
            const message = String(err?.message ?? err);
            const reason = /^(\w+): /.exec(message)?.[1] ?? "";
            const e = { identity: participant?.identity ?? "", reason, message };
            seen.encryptionErrors.push(e);
            log("encryption error", JSON.stringify(e));
        });
        lkRoom.on(RoomEvent.ConnectionStateChanged, (s) => {
            seen.states.push(s);
            log("LiveKit connection", s);
        });
        lkRoom.on(RoomEvent.ParticipantConnected, (p) => log("LiveKit participant joined:", p.identity));
        lkRoom.on(RoomEvent.ParticipantDisconnected, (p) => log("LiveKit participant left:", p.identity));
        await lkRoom.setE2EEEnabled(true);
        await lkRoom.connect(url, jwt);
        if (callIntent === "audio") {
            await lkRoom.localParticipant.setMicrophoneEnabled(true);
        } else {
            await lkRoom.localParticipant.enableCameraAndMicrophone();
        }
        log("in the call as", lkRoom.localParticipant.identity, "in LiveKit room", lkRoom.name);
        return window.harness.status();
    },

    // status is what the session and the SDK say about the call.
    status() {
        if (!session || !lkRoom) return { inCall: false };
        const publications = [...lkRoom.localParticipant.trackPublications.values()].map((p) => ({
            kind: p.kind,
            source: p.source,
            encryption: p.encryption,
        }));
        const memberships = session.memberships.map((m) => ({
            userId: m.userId,
            deviceId: m.deviceId,
            memberId: m.memberId,
            identity: m.rtcBackendIdentity,
            eventId: m.eventId,
        }));
        const participants = [...lkRoom.remoteParticipants.values()].map((p) => ({
            identity: p.identity,
            tracks: [...p.trackPublications.values()].map((t) => `${t.source}:${t.isSubscribed ? "subscribed" : "not subscribed"}`),
        }));
        return {
            inCall: true,
            joined: session.isJoined(),
            membershipStatus: String(session.membershipStatus ?? ""),
            state: lkRoom.state,
            identity: lkRoom.localParticipant.identity,
            lkRoom: lkRoom.name,
            e2ee: lkRoom.isE2EEEnabled,
            publications,
            memberships,
            participants,
            keys: seen.keys,
            notifications: seen.notifications,
            sessionErrors: seen.sessionErrors,
            encryptionErrors: seen.encryptionErrors,
            states: seen.states,
        };
    },

    // leaveCall hangs up as Element Call does: the session (membership removed, keys no
    // longer sent), then the SFU.
    async leaveCall() {
        requireSession();
        const left = await session.leaveRoomSession(10000);
        await lkRoom.disconnect();
        log("left the call; membership removed:", left);
        return left;
    },

    // sendText sends a text message to the room (encrypted where the room is).
    async sendText(roomId, body) {
        const resp = await client.sendTextMessage(roomId, body);
        return resp.event_id;
    },

    // notices lists the m.notice bodies in room's live timeline and the events that could
    // not be decrypted (room.js).
    notices(roomId) {
        return roomNotices(client, roomId);
    },

    async stop() {
        client?.stopClient();
    },
};

log("ready");
