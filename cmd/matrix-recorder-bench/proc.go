package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// procSample is a process's CPU time and memory at one moment.
type procSample struct {
	at  time.Time
	cpu time.Duration // user + system, all threads
	rss int64         // bytes
	// rssAnon and rssFile split rss: memory the process allocated, and pages of files it
	// maps (its binary's code above all, which grows as code runs for the first time).
	rssAnon, rssFile int64
	hwm              int64 // peak resident set, bytes
	pss              int64 // proportional set (shared pages split among their users), bytes; only from samplePSS
}

// sampleProc reads /proc for pid (0: this process).
func sampleProc(pid int) (procSample, error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, fmt.Errorf("read cpu time: %w", err)
	}
	// The command name (field 2) may hold spaces; the fields after it are plain.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("unexpected %s/stat", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("unexpected %s/stat", dir)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, fmt.Errorf("read memory: %w", err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rss = kb << 10
		case "VmHWM":
			s.hwm = kb << 10
		case "RssAnon":
			s.rssAnon = kb << 10
		case "RssFile":
			s.rssFile = kb << 10
		}
	}
	return s, nil
}

// samplePSS is sampleProc with the proportional set size: the measure of memory for
// many processes that share libraries (their RSS counts every shared page in each).
func samplePSS(pid int) (procSample, error) {
	s, err := sampleProc(pid)
	if err != nil {
		return s, err
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return s, fmt.Errorf("read memory: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.pss = kb << 10
		}
	}
	return s, nil
}

// threads is the number of threads of pid (/proc/<pid>/status).
func threads(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b float64) string { return fmt.Sprintf("%.0f KiB", b/1024) }
