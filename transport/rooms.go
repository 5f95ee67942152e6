package transport

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/shardchat/shardchat/shard"
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
	expires time.Time
}

// roomsResponse is the body of GET /api/rooms.
type roomsResponse struct {
	Rooms []shard.RoomInfo `json:"rooms"`
}

func (d *roomDirectory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := d.list(r.Context())
	if err != nil {
		http.Error(w, "rooms are not available right now", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

func (d *roomDirectory) list(ctx context.Context) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().Before(d.expires) {
		return d.body, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rooms, err := d.srv.cfg.Hub.Rooms(ctx, maxListedRooms)
	if err != nil {
		return nil, err
	}
	if rooms == nil {
		rooms = []shard.RoomInfo{}
	}
	body, err := json.Marshal(roomsResponse{Rooms: rooms})
	if err != nil {
		return nil, err
	}
	d.body, d.expires = append(body, '\n'), time.Now().Add(time.Second)
	return d.body, nil
}
