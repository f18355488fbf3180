// room.js: what both matrix-js-sdk pages (matrixcall, rtcsession) read from a room.

// notices lists the m.notice bodies in a room's live timeline (decrypted ones included) and
// the events that could not be decrypted, as "ID from SENDER: REASON (at TIME)".
export function notices(client, roomId) {
    const room = client.getRoom(roomId);
    if (!room) return { bodies: [], undecryptable: [] };
    const bodies = [];
    const undecryptable = [];
    for (const ev of room.getLiveTimeline().getEvents()) {
        if (ev.isDecryptionFailure()) {
            undecryptable.push(`${ev.getId()} from ${ev.getSender()}: ${ev.decryptionFailureReason} (at ${new Date(ev.getTs()).toISOString()})`);
        }
        if (ev.getType() === "m.room.message" && ev.getContent().msgtype === "m.notice") {
            bodies.push(ev.getContent().body ?? "");
        }
    }
    return { bodies, undecryptable };
}
