package call

import "errors"

// ErrOtherInstance is what an admission check returns when another recorder instance of
// the fleet takes the call (it won the room's lease): this instance says nothing about
// it, neither an answer nor a refusal.
var ErrOtherInstance = errors.New("another recorder instance takes this call")
