package bench

import (
	"fmt"
	"strings"
	"time"

	"github.com/shardchat/shardchat/transport/wire"
)

// Workload is what the clients of a run do. Each user is one connection in one room; user i
// is in room i mod Rooms, so the rooms are filled evenly. Unlike Config, a zero field here is
// a value (Rate 0 is as fast as the server allows): start from Scenario and change fields.
type Workload struct {
	// Users is how many clients connect, one user each.
	Users int `json:"users"`
	// Rooms is how many rooms the users are spread over.
	Rooms int `json:"rooms"`
	// Messages is how many messages each user sends, when Duration is 0.
	Messages int `json:"messages"`
	// Rate is messages a second per user; 0 sends as fast as the server takes them: the
	// burst that its welcome announces at once, then its rate.
	Rate float64 `json:"rate"`
	// Ramp is connections opened a second; 0 opens them as fast as they go,
	// Config.DialConcurrency at a time.
	Ramp float64 `json:"ramp"`
	// Duration, when above 0, makes every user send for this long instead of Messages.
	Duration time.Duration `json:"duration"`
	// TextSize is the size of each message's text in bytes.
	TextSize int `json:"text_size"`
}

// Overrides are workload fields to change from a scenario's; nil leaves a field as it is.
type Overrides struct {
	Users, Rooms, Messages, TextSize *int
	Rate, Ramp                       *float64
	Duration                         *time.Duration
}

// With returns w with the fields of o that are set.
func (w Workload) With(o Overrides) Workload {
	set(&w.Users, o.Users)
	set(&w.Rooms, o.Rooms)
	set(&w.Messages, o.Messages)
	set(&w.TextSize, o.TextSize)
	set(&w.Rate, o.Rate)
	set(&w.Ramp, o.Ramp)
	set(&w.Duration, o.Duration)
	return w
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// DefaultScenario is the scenario of a run that names none.
const DefaultScenario = "seed"

// defaultTextSize is about a line of chat.
const defaultTextSize = 64

// ScenarioNames lists the named scenarios, in the order a reader meets them.
func ScenarioNames() []string {
	return []string{"seed", "burst", "fanout", "connections", "soak"}
}

// Scenario returns the workload of a named scenario:
//
//   - seed: 500 users in 10 rooms, 10 messages each at 1 a second (steady chat);
//   - burst: the same as fast as the server takes them;
//   - fanout: 1000 users in one room, 5 messages each as fast as the server takes them;
//   - connections: 5000 idle users ramped at 1000 a second, then 1 message each;
//   - soak: 500 users in 10 rooms chatting at 1 message a second for a minute.
func Scenario(name string) (Workload, error) {
	w := Workload{TextSize: defaultTextSize}
	switch name {
	case "seed":
		w.Users, w.Rooms, w.Messages, w.Rate = 500, 10, 10, 1
	case "burst":
		w.Users, w.Rooms, w.Messages, w.Rate = 500, 10, 10, 0
	case "fanout":
		w.Users, w.Rooms, w.Messages, w.Rate = 1000, 1, 5, 0
	case "connections":
		w.Users, w.Rooms, w.Messages, w.Rate, w.Ramp = 5000, 50, 1, 0, 1000
	case "soak":
		w.Users, w.Rooms, w.Rate, w.Duration = 500, 10, 1, time.Minute
	default:
		return Workload{}, fmt.Errorf("unknown scenario %q: want one of %s", name, strings.Join(ScenarioNames(), ", "))
	}
	return w, nil
}

// validate says what to fix in a workload that cannot run.
func (w Workload) validate() error {
	switch {
	case w.Users < 1:
		return fmt.Errorf("users %d: want at least 1", w.Users)
	case w.Rooms < 1 || w.Rooms > w.Users:
		return fmt.Errorf("rooms %d: want 1 to the number of users (%d)", w.Rooms, w.Users)
	case w.Messages < 0:
		return fmt.Errorf("messages %d: want 0 or more", w.Messages)
	case w.Rate < 0:
		return fmt.Errorf("rate %g: want 0 (as fast as the server allows) or more messages a second", w.Rate)
	case w.Ramp < 0:
		return fmt.Errorf("ramp %g: want 0 (all at once) or more connections a second", w.Ramp)
	case w.Duration < 0:
		return fmt.Errorf("duration %s: want 0 (use messages) or more", w.Duration)
	case w.TextSize < 1 || w.TextSize > wire.MaxText:
		return fmt.Errorf("text size %d: want 1 to %d bytes", w.TextSize, wire.MaxText)
	}
	return nil
}

// roomOf is the room of user i.
func (w Workload) roomOf(user int) int { return user % w.Rooms }

// String describes the workload in one line.
func (w Workload) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s in %s, ", count(w.Users, "user"), count(w.Rooms, "room"))
	if w.Duration > 0 {
		fmt.Fprintf(&b, "sending for %s", w.Duration)
	} else {
		fmt.Fprintf(&b, "%s each", count(w.Messages, "message"))
	}
	if w.Rate > 0 {
		fmt.Fprintf(&b, " at %g a second", w.Rate)
	} else {
		b.WriteString(" as fast as the server takes them")
	}
	if w.Ramp > 0 {
		fmt.Fprintf(&b, ", connecting %g a second", w.Ramp)
	}
	fmt.Fprintf(&b, ", %d-byte texts", w.TextSize)
	return b.String()
}

// count is "1 room" or "2 rooms".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
