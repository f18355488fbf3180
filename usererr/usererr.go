// Package usererr holds the one error type whose text is meant for the person who asked:
// the bot shows it in the room as it is, where any other error is a failure it reports
// as such (and logs). Call backends, the post-call jobs and the bot's own commands all
// return it; it sits below them so that each can, without importing the others.
package usererr

// Error is a problem the user who asked should read in the room, as it is.
type Error struct{ Msg string }

func (e Error) Error() string { return e.Msg }
