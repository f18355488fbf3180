package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// loadAvg is the 1-minute load average (/proc/loadavg, what uptime prints first): the
// machine is shared, so every measurement says how busy it was around it.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// loadSpan is the load average before and after a measured window.
type loadSpan struct{ Before, After float64 }

func (l loadSpan) String() string { return fmt.Sprintf("%.1f → %.1f", l.Before, l.After) }

// busy reports whether the machine had more runnable work than cores around the window
// (the numbers then include waiting for a core).
func (l loadSpan) busy(cores int) bool { return max(l.Before, l.After) > float64(cores) }

// loadRange sums up the load spans of a table for its header.
func loadRange(spans []loadSpan) string {
	if len(spans) == 0 {
		return ""
	}
	lo, hi := spans[0].Before, spans[0].Before
	for _, s := range spans {
		lo = min(lo, s.Before, s.After)
		hi = max(hi, s.Before, s.After)
	}
	return fmt.Sprintf("%.1f to %.1f", lo, hi)
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped because a socket's
// receive buffer was full, in this network namespace (/proc/self/net/snmp): packets a
// receiver did not read in time.
func udpRcvbufErrors() uint64 {
	b, err := os.ReadFile("/proc/self/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}
