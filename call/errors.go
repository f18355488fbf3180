package call

// UserError is a reason a backend could not start that the person who asked should read
// in the room as it is (the bot shows other errors as failures).
type UserError struct{ Msg string }

func (e UserError) Error() string { return e.Msg }
