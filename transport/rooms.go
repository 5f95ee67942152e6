package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/auth"
)

// maxListedRooms is how many rooms GET /api/rooms lists.
const maxListedRooms = 100

// roomDirectory answers GET /api/rooms: the busiest rooms with their member counts, as JSON.
// The list is computed at most once a second, however often it is asked for, because it
// visits every shard.
type roomDirectory struct {
	srv *Server

	// Guarded by mu.
	mu      sync.Mutex
	body    []byte
	rooms   []shard.RoomInfo
	expires time.Time
}

// roomsResponse is the body of GET /api/rooms.
type roomsResponse struct {
	Rooms []shard.RoomInfo `json:"rooms"`
}

func (d *roomDirectory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var claims *auth.Claims
	if d.srv.cfg.Auth != nil {
		// With authentication on, room names are not public: the list takes a token and
		// shows only the rooms it may join.
		var err error
		if claims, err = d.srv.verify(r); err != nil {
			msg := "a valid token is required"
			var refusal *auth.Refusal
			if errors.As(err, &refusal) {
				msg = refusal.Message
			}
			http.Error(w, msg, http.StatusUnauthorized)
			return
		}
	}
	body, rooms, err := d.list(r.Context())
	if err != nil {
		http.Error(w, "rooms are not available right now", http.StatusServiceUnavailable)
		return
	}
	if claims != nil && claims.Rooms != nil {
		allowed := make([]shard.RoomInfo, 0, len(rooms))
		for _, room := range rooms {
			if claims.MayJoin(room.Name) {
				allowed = append(allowed, room)
			}
		}
		if body, err = json.Marshal(roomsResponse{Rooms: allowed}); err != nil {
			http.Error(w, "rooms are not available right now", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// list returns the cached list, as JSON and as values.
func (d *roomDirectory) list(ctx context.Context) ([]byte, []shard.RoomInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().Before(d.expires) {
		return d.body, d.rooms, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rooms, err := d.srv.cfg.Hub.Rooms(ctx, maxListedRooms)
	if err != nil {
		return nil, nil, err
	}
	if rooms == nil {
		rooms = []shard.RoomInfo{}
	}
	body, err := json.Marshal(roomsResponse{Rooms: rooms})
	if err != nil {
		return nil, nil, err
	}
	d.body, d.rooms, d.expires = append(body, '\n'), rooms, time.Now().Add(time.Second)
	return d.body, d.rooms, nil
}
