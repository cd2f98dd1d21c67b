package cron

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestNext checks ticks in time zones, across both daylight-saving
// transitions of 2026 (Europe: 29 March, 02:00 → 03:00 CEST; US: 1 November,
// 02:00 EDT → 01:00 EST).
func TestNext(t *testing.T) {
	cases := []struct {
		name, expr, tz, from string
		want                 []string // consecutive ticks, UTC
	}{
		{"UTC by default", "0 4 * * *", "", "2026-06-01T00:00:00Z",
			[]string{"2026-06-01T04:00:00Z", "2026-06-02T04:00:00Z"}},
		{"the seed's zone", "0 4 * * *", "Asia/Hong_Kong", "2026-06-01T00:00:00Z",
			[]string{"2026-06-01T20:00:00Z", "2026-06-02T20:00:00Z"}},
		{"every minute", "* * * * *", "Europe/Berlin", "2026-06-01T00:00:30Z",
			[]string{"2026-06-01T00:01:00Z", "2026-06-01T00:02:00Z"}},
		// 02:30 does not exist in Berlin on 29 March: that day is skipped.
		{"spring forward skips a missing wall time", "30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z",
			[]string{"2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"}},
		{"spring forward, hourly", "0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z",
			[]string{"2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
		// 01:30 happens twice in New York on 1 November: it runs once, at
		// the first (EDT, 05:30Z), not again at 06:30Z (EST).
		{"fall back runs once", "30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z"}},
		{"fall back, several times in the repeated hour", "*/20 1 * * *", "America/New_York", "2026-11-01T04:00:00Z",
			[]string{"2026-11-01T05:00:00Z", "2026-11-01T05:20:00Z", "2026-11-01T05:40:00Z", "2026-11-02T06:00:00Z"}},
		{"fall back, every minute of a fixed hour", "* 1 * * *", "America/New_York", "2026-11-01T05:58:30Z",
			[]string{"2026-11-01T05:59:00Z", "2026-11-02T06:00:00Z"}},
		// A wildcard hour follows real time: both 01:00s run.
		{"fall back, hourly follows real time", "0 * * * *", "America/New_York", "2026-11-01T03:30:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"}},
		{"descriptor", "@daily", "America/New_York", "2026-06-01T00:00:00Z",
			[]string{"2026-06-01T04:00:00Z", "2026-06-02T04:00:00Z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(c.expr, c.tz)
			if err != nil {
				t.Fatal(err)
			}
			at := utc(c.from)
			for i, w := range c.want {
				at = s.Next(at)
				if !at.Equal(utc(w)) {
					t.Fatalf("tick %d of %q in %q: got %s, want %s", i, c.expr, c.tz, at.Format(time.RFC3339), w)
				}
				if at.Location() != time.UTC {
					t.Fatalf("tick %v not in UTC", at)
				}
			}
		})
	}
}

func TestNextNever(t *testing.T) {
	s, err := Parse("0 0 30 2 *", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Next(utc("2026-01-01T00:00:00Z")); !got.IsZero() {
		t.Fatalf("30 February: got a tick at %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ expr, tz, want string }{
		{"", "", "an expression is required"},
		{"61 * * * *", "", "write 5 fields"},
		{"* * * *", "", "write 5 fields"},
		{"0 4 * * *", "Mars/Olympus", `unknown time zone "Mars/Olympus": use an IANA name`},
		{"0 4 * * *", "Local", "unknown time zone"},
		{"CRON_TZ=UTC 0 4 * * *", "", "give the time zone in the timezone field"},
	}
	for _, c := range cases {
		_, err := Parse(c.expr, c.tz)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q, %q): got %v, want an error containing %q", c.expr, c.tz, err, c.want)
		}
	}
}

func TestMinInterval(t *testing.T) {
	// The sample of 500 ticks of a daily schedule reaches the spring-forward
	// of 2027, when a Berlin day has 23 hours.
	from := utc("2026-10-25T00:00:00Z")
	cases := []struct {
		expr    string
		min     time.Duration
		wantGap time.Duration
		ok      bool
	}{
		{"* * * * *", DefaultMinInterval, time.Minute, true},
		{"*/5 * * * *", 10 * time.Minute, 5 * time.Minute, false},
		{"0 4 * * *", time.Hour, 23 * time.Hour, true},
		{"@every 30s", DefaultMinInterval, 30 * time.Second, false},
		{"@hourly", time.Hour, time.Hour, true},
		// Two ticks a minute apart once a year still count.
		{"0,1 0 1 1 *", 5 * time.Minute, time.Minute, false},
		{"0 0 29 2 *", time.Hour, 4 * 365 * 24 * time.Hour, true},
	}
	for _, c := range cases {
		s, err := Parse(c.expr, "Europe/Berlin")
		if err != nil {
			t.Fatal(err)
		}
		gap := s.MinGap(from)
		if c.expr != "0 0 29 2 *" && gap != c.wantGap {
			t.Errorf("MinGap(%q) = %s, want %s", c.expr, gap, c.wantGap)
		}
		err = s.CheckMinInterval(from, c.min)
		if (err == nil) != c.ok {
			t.Errorf("CheckMinInterval(%q, %s) = %v, want ok=%t", c.expr, c.min, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "minimum interval between runs is "+c.min.String()) {
			t.Errorf("CheckMinInterval(%q): message %q does not name the minimum", c.expr, err)
		}
	}
}

func TestDueTicks(t *testing.T) {
	every, _ := Parse("* * * * *", "")
	hourly, _ := Parse("0 * * * *", "America/New_York")
	cases := []struct {
		name        string
		s           *Schedule
		after, now  string
		wantLatest  string
		wantN       int
		wantAtLeast bool
	}{
		{"none yet", hourly, "2026-06-01T10:00:00Z", "2026-06-01T10:59:59Z", "", 0, false},
		{"one, on time", hourly, "2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z", "2026-06-01T11:00:00Z", 1, false},
		{"one, late", hourly, "2026-06-01T10:00:00Z", "2026-06-01T11:59:00Z", "2026-06-01T11:00:00Z", 1, false},
		{"missed five", hourly, "2026-06-01T10:00:00Z", "2026-06-01T15:30:00Z", "2026-06-01T15:00:00Z", 5, false},
		// A year of downtime of an every-minute schedule is not walked tick by tick.
		{"a year down", every, "2025-06-01T10:00:00Z", "2026-06-01T10:00:30Z", "2026-06-01T10:00:00Z", 1000, true},
	}
	for _, c := range cases {
		latest, n := dueTicks(c.s, utc(c.after), utc(c.now))
		if c.wantLatest == "" {
			if n != 0 {
				t.Errorf("%s: got %d ticks", c.name, n)
			}
			continue
		}
		if !latest.Equal(utc(c.wantLatest)) || (n != c.wantN && !(c.wantAtLeast && n >= c.wantN)) {
			t.Errorf("%s: got %s ×%d, want %s ×%d", c.name, latest, n, c.wantLatest, c.wantN)
		}
	}
}
