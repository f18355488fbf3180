package bot

import (
	"github.com/matrix-recorder/matrix-recorder/call"
)

// newBackends creates the group-call backends this bot offers on !start. Each backend
// package adds its constructor here.
func (b *Bot) newBackends() ([]call.Backend, error) {
	var out []call.Backend
	return out, nil
}
