package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// parseDuration reads a duration as Go does (300ms, 1.5h, 2h45m) and also
// in days and weeks: d is 24h and w 7d, alone or first (7d, 2w, 1d12h).
func parseDuration(s string) (time.Duration, error) {
	str := strings.TrimSpace(s)
	var total time.Duration
	for str != "" {
		i := 0
		for i < len(str) && (str[i] >= '0' && str[i] <= '9' || str[i] == '.') {
			i++
		}
		if i == 0 || i == len(str) || (str[i] != 'd' && str[i] != 'w') {
			break // the rest is Go's
		}
		n, err := strconv.ParseFloat(str[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		unit := 24 * time.Hour
		if str[i] == 'w' {
			unit *= 7
		}
		total += time.Duration(n * float64(unit))
		str = str[i+1:]
	}
	if str == "" {
		if total == 0 && strings.TrimSpace(s) == "" {
			return 0, errors.New("empty duration")
		}
		return total, nil
	}
	d, err := time.ParseDuration(str)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 30s, 15m, 2h, 7d or 2w", s)
	}
	return total + d, nil
}

// formatDuration shows a duration as parseDuration reads it, in days or
// weeks when it is a whole number of them.
func formatDuration(d time.Duration) string {
	const day, week = 24 * time.Hour, 7 * 24 * time.Hour
	switch {
	case d > 0 && d%week == 0:
		return strconv.FormatInt(int64(d/week), 10) + "w"
	case d > 0 && d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// durationValue is a pflag.Value for a duration read by parseDuration.
type durationValue time.Duration

func (d *durationValue) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string { return formatDuration(time.Duration(*d)) }
func (d *durationValue) Type() string   { return "duration" }

// durationFlag defines a duration flag that also takes days and weeks.
func durationFlag(fs *pflag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}
