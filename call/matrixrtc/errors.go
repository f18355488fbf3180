package matrixrtc

import "errors"

// ErrNotOwner marks a membership whose state key (or sticky key) names another user than
// its sender: MatrixRTC gives a key that names a user to that user only, so nobody can
// blank or overwrite someone else's membership.
var ErrNotOwner = errors.New("call membership keyed by another user")

// ErrOtherCall marks a valid membership of some other call or application than the room's
// main call (nothing to record, nothing to log).
var ErrOtherCall = errors.New("membership of another call or application")

// ErrServiceURL marks a livekit_service_url the bot does not contact.
var ErrServiceURL = errors.New("unusable livekit_service_url")
