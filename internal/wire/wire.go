// Package wire holds the JSON shapes that more than one of Runnel's
// transports send (the HTTP API's answers and the WebSocket gateway's
// messages), so that a log line or a time reads the same on each.
package wire

import (
	"time"

	"github.com/runnel-ci/runnel"
)

// TimeLayout is RFC 3339 in UTC with milliseconds, of a fixed width so that
// times sort as strings.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Time writes t in TimeLayout.
func Time(t time.Time) string { return t.UTC().Format(TimeLayout) }

// TimePtr is Time of *t, or nil (JSON null) for a nil or zero time.
func TimePtr(t *time.Time) *string {
	if t == nil || t.IsZero() {
		return nil
	}
	s := Time(*t)
	return &s
}

// LogLine is a stored log line as the API and the gateway send it.
type LogLine struct {
	Seq     int64  `json:"seq"`
	Time    string `json:"time"`
	Level   string `json:"level"`
	Message string `json:"message"`
}

// Line is l as sent.
func Line(l runnel.LogLine) LogLine {
	return LogLine{Seq: l.Seq, Time: Time(l.Time), Level: l.Level, Message: l.Message}
}
