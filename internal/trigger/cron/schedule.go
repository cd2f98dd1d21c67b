// Package cron owns Runnel's cron triggers: the schedule arithmetic (next
// tick in a time zone, across daylight-saving transitions, and the minimum
// interval between ticks) and the Service that starts one run per tick of
// every pipeline's cron schedules, shared safely by several server replicas.
package cron

import (
	"errors"
	"fmt"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"
)

// DefaultMinInterval is the smallest gap allowed between two ticks of one
// schedule unless the server is configured otherwise: "* * * * *" is allowed.
const DefaultMinInterval = time.Minute

// Schedule is a cron expression evaluated in a time zone.
//
// Daylight-saving time, in the zone's wall clock:
//   - spring forward: a wall time that does not exist that day is skipped
//     ("30 2 * * *" in Europe/Berlin does not run on 2026-03-29, when 02:00
//     jumps to 03:00; it runs at 02:30 the day before and the day after);
//   - fall back: a wall time that occurs twice runs once, at its first
//     occurrence ("30 1 * * *" in America/New_York runs at 01:30 EDT on
//     2026-11-01, not again at 01:30 EST) — unless the expression's hour
//     field is a wildcard ("*", "*/2"): such schedules follow real time and
//     run in both passes of the repeated hour ("0 * * * *" runs at 01:00 EDT
//     and 01:00 EST), so an hourly job never waits two hours.
type Schedule struct {
	// Expr is the expression as written (5 fields or a descriptor).
	Expr string
	// Location is the zone the expression is read in.
	Location *time.Location

	sched robfig.Schedule
	// perHour: the hour field is a wildcard, so a repeated wall hour runs
	// again rather than being skipped.
	perHour bool
}

// Parse parses a 5-field cron expression (minute hour day-of-month month
// day-of-week) or a descriptor (@hourly, @daily, @weekly, @monthly, @yearly,
// @every <duration>) in the IANA zone tz ("" is UTC). Errors say what is
// accepted.
func Parse(expr, tz string) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("an expression is required, such as \"0 4 * * *\"")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("invalid cron expression %q: give the time zone in the timezone field, not in the expression", expr)
	}
	loc, err := LoadLocation(tz)
	if err != nil {
		return nil, err
	}
	s, err := robfig.ParseStandard("CRON_TZ=" + loc.String() + " " + expr)
	if err != nil {
		return nil, fmt.Errorf("invalid cron expression %q: %v; write 5 fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly", expr, err)
	}
	perHour := expr == "@hourly" || strings.HasPrefix(expr, "@every")
	if f := strings.Fields(expr); len(f) == 5 {
		perHour = strings.HasPrefix(f[1], "*")
	}
	return &Schedule{Expr: expr, Location: loc, sched: s, perHour: perHour}, nil
}

// LoadLocation loads an IANA zone; "" and "UTC" are UTC. "Local" is refused:
// the server's own zone would make a schedule depend on where it runs.
func LoadLocation(tz string) (*time.Location, error) {
	if tz == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "Local" {
		return nil, fmt.Errorf("unknown time zone %q: use an IANA name such as Europe/Berlin or Asia/Hong_Kong (empty is UTC)", tz)
	}
	return loc, nil
}

// Key identifies the schedule's definition (expression and zone).
func (s *Schedule) Key() string { return s.Expr + "|" + s.Location.String() }

// Next returns the first tick strictly after after, in UTC; the zero time
// when there is none (an expression that never matches, such as 30 February).
func (s *Schedule) Next(after time.Time) time.Time {
	t := after
	// A fall-back pass repeats at most two hours: at most 120 ticks of a
	// schedule allowed to run every minute are skipped in a row.
	for range 256 {
		t = s.sched.Next(t)
		if t.IsZero() {
			return t
		}
		if s.perHour || !s.repeated(t) {
			return t.UTC()
		}
	}
	return time.Time{}
}

// repeated reports whether t's wall-clock time already occurred a little
// earlier in the zone (the second pass of a fall-back transition) as a tick
// of this schedule.
func (s *Schedule) repeated(t time.Time) bool {
	const wall = "2006-01-02 15:04:05"
	w := t.In(s.Location).Format(wall)
	// Offsets change by at most two hours, in steps of 15 minutes.
	for d := 15 * time.Minute; d <= 2*time.Hour; d += 15 * time.Minute {
		u := t.Add(-d)
		if u.In(s.Location).Format(wall) == w {
			return true
		}
	}
	return false
}

// SampleTicks is how many consecutive ticks MinGap examines.
const SampleTicks = 500

// MinGap returns the smallest gap between consecutive ticks among the first
// SampleTicks ticks after from (0 when the schedule ticks at most once).
func (s *Schedule) MinGap(from time.Time) time.Duration {
	var gap time.Duration
	prev := s.Next(from)
	if prev.IsZero() {
		return 0
	}
	for range SampleTicks - 1 {
		t := s.Next(prev)
		if t.IsZero() {
			break
		}
		if d := t.Sub(prev); gap == 0 || d < gap {
			gap = d
		}
		prev = t
	}
	return gap
}

// CheckMinInterval returns an error when the schedule fires more often than
// minimum (sampled over the next SampleTicks ticks after from).
func (s *Schedule) CheckMinInterval(from time.Time, minimum time.Duration) error {
	if gap := s.MinGap(from); gap > 0 && gap < minimum {
		return fmt.Errorf("%q has ticks %s apart; the minimum interval between runs is %s", s.Expr, gap, minimum)
	}
	return nil
}
