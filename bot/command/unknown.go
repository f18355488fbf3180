package command

import "fmt"

// unknownReply is the answer to an unknown command, or "" when it is not meant for this
// bot: other bots in the room have commands too ("!ban", "!stat"), so only a command word
// in a message that mentions the bot gets an answer, with a hint when it is one edit
// or two away from one of the bot's commands.
func (p *Processor) unknownReply(name string, mentioned bool) string {
	if !mentioned || !commandWord(name) {
		return ""
	}
	best, dist := "", 99
	for n := range p.byName {
		if d := editDistance(name, n); d < dist || (d == dist && n < best) {
			best, dist = n, d
		}
	}
	limit := 1
	if len(name) > 4 {
		limit = 2
	}
	if dist <= limit {
		return fmt.Sprintf("I don't know %s%s. Did you mean %s%s? Type %shelp for what I can do.", p.prefix, name, p.prefix, best, p.prefix)
	}
	return fmt.Sprintf("I don't know %s%s. Type %shelp for what I can do.", p.prefix, name, p.prefix)
}

// commandWord reports whether a word looks like a command: a letter, then letters,
// digits, - or _, at most 32 in all.
func commandWord(w string) bool {
	if w == "" || len(w) > 32 {
		return false
	}
	for i, r := range w {
		letter := r >= 'a' && r <= 'z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '-' || r == '_')) {
			return false
		}
	}
	return true
}

// editDistance is the optimal string alignment distance (Levenshtein with adjacent
// transpositions) of two short ASCII words.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
