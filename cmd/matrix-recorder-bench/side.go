package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// Part 2: the whole bot against a plain pion recorder, the same calls from the same
// callers through the same Dendrite, one after the other in one run. The bot is a Matrix
// bot and cannot be driven without Matrix, so the baseline speaks the same MSC2746
// signalling (plainrecorder/).

// sidePair is one round at one size: the bot's step and the plain recorder's.
type sidePair struct {
	Calls      int
	Round      int
	Bot, Plain stepRow
}

// callBench is the 1:1 call environment and the two recorders.
type callBench struct {
	env   *callEnv
	bot   *botTarget
	plain *plainTarget
}

func startCallBench(ctx context.Context, work string, bins binaries, pprof bool, udpPort uint16, logf logFunc) (*callBench, error) {
	env, err := startCallEnv(ctx, work, bins, logf)
	if err != nil {
		return nil, err
	}
	cb := &callBench{env: env}
	var edit func(*config.Config)
	if udpPort != 0 {
		edit = func(c *config.Config) { c.WebRTC.UDPPort = udpPort }
	}
	bp, err := newBotProc(ctx, bins.bot, filepath.Join(work, "bot"), env.hs, "recorder", pprof, edit)
	if err != nil {
		return nil, errors.Join(err, env.close())
	}
	cb.bot = &botTarget{p: bp}
	if cb.plain, err = newPlainTarget(ctx, bins.plain, filepath.Join(work, "plain"), env.hs); err != nil {
		return nil, errors.Join(err, env.close())
	}
	if pprof {
		port, err := devtools.FreePort()
		if err != nil {
			return nil, errors.Join(err, env.close())
		}
		cb.plain.profAddr = "127.0.0.1:" + strconv.Itoa(port)
	}
	return cb, nil
}

func (cb *callBench) close() error { return cb.env.close() }

// runSide measures both recorders at every size, rounds times; odd rounds run the plain
// recorder first, so a change in the machine's load during a run does not always favour
// the same side.
func runSide(ctx context.Context, cb *callBench, sizes []int, rounds int, window time.Duration, only string, prof *profiler) ([]sidePair, error) {
	var out []sidePair
	for _, n := range sizes {
		for round := range rounds {
			p := sidePair{Calls: n, Round: round + 1}
			order := []target{cb.bot, cb.plain}
			if round%2 == 1 {
				order = []target{cb.plain, cb.bot}
			}
			for _, t := range order {
				if only != "" && only != t.name() {
					continue
				}
				name := "bot"
				if t != target(cb.bot) {
					name = "plain"
				}
				row, err := runStep(ctx, cb.env, t, n, window, prof, fmt.Sprintf("%s-%dcalls-round%d", name, n, round+1))
				if err != nil {
					return out, fmt.Errorf("%s, %d calls: %w", t.name(), n, err)
				}
				if t == target(cb.bot) {
					p.Bot = row
				} else {
					p.Plain = row
				}
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// runLadder records more and more calls with the bot until one loses packets or is not
// recorded whole: the largest load it takes here.
func runLadder(ctx context.Context, cb *callBench, sizes []int, window time.Duration, logf logFunc) ([]stepRow, string) {
	var rows []stepRow
	for _, n := range sizes {
		row, err := runStep(ctx, cb.env, cb.bot, n, window, nil, "")
		if err != nil {
			msg := fmt.Sprintf("%d participants: %v", n, err)
			logf("%s", msg)
			return rows, msg
		}
		rows = append(rows, row)
		if !row.lossless() {
			break
		}
	}
	return rows, ""
}
