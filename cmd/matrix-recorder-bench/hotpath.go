package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Part 0: the hot path benchmarks of the recorder package (go test -bench), so that
// BENCHMARKS.md holds every number in one place.

// hotRow is one benchmark line.
type hotRow struct {
	Name, NsPerOp, SteadyAllocs, BytesPerOp, AllocsPerOp string
}

const hotBenchArgs = "go test -tags goolm -run ^$ -bench BenchmarkTrack -benchtime 200000x ./recorder/"

func runHotPath(ctx context.Context) ([]hotRow, error) {
	args := strings.Fields(hotBenchArgs)
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s", hotBenchArgs, err, out)
	}
	var rows []hotRow
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		r := hotRow{Name: strings.TrimPrefix(f[0], "Benchmark")}
		for i := 2; i+1 < len(f); i += 2 {
			switch f[i+1] {
			case "ns/op":
				r.NsPerOp = f[i]
			case "steady-allocs/pkt":
				r.SteadyAllocs = f[i]
			case "B/op":
				r.BytesPerOp = f[i]
			case "allocs/op":
				r.AllocsPerOp = f[i]
			}
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s printed no results: %s", hotBenchArgs, out)
	}
	return rows, nil
}
