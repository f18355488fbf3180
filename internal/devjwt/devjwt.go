// Package devjwt serves the protocol of Element's lk-jwt-service (which cannot be
// installed here) for the integration tests and the demo: POST /get_token and the legacy
// POST /sfu/get check the caller's Matrix OpenID token against its homeserver's federation
// API (/_matrix/federation/v1/openid/userinfo), create the LiveKit room, and answer
// {url, jwt} with a LiveKit token minted by livekit/protocol's auth package. Room names
// and identities are derived as lk-jwt-service ≥ 0.4 does (hashes), or, with
// Options.LegacyRoomNames, as older versions did (the Matrix room id). Like lk-jwt-service it
// answers pages of any origin (CORS), so that a browser client can ask it for a token.
package devjwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// Options configure a Service.
type Options struct {
	// LiveKitURL is the SFU's signalling URL handed to clients (ws://…).
	LiveKitURL string
	// LiveKitHTTPURL is the SFU's HTTP URL, for creating rooms.
	LiveKitHTTPURL string
	// APIKey and APISecret sign the tokens.
	APIKey, APISecret string
	// Homeservers maps Matrix server names to their base URLs for OpenID verification
	// (the harness's Dendrite speaks plain HTTP on loopback).
	Homeservers map[string]string
	// NoGetToken answers /get_token with 404, like lk-jwt-service before 0.4.
	NoGetToken bool
	// LegacyRoomNames names LiveKit rooms by the Matrix room id, like lk-jwt-service before 0.4.
	LegacyRoomNames bool
	Logger          zerolog.Logger
}

// Service is a running JWT service.
type Service struct {
	opts Options
	srv  *http.Server
	ln   net.Listener
	hc   *http.Client

	mu       sync.Mutex
	requests map[string]int
	issued   []Grant
}

// Grant is one token the service issued.
type Grant struct {
	Endpoint string
	UserID   string
	Room     string
	Identity string
}

// Start listens on 127.0.0.1 and serves until Close.
func Start(opts Options) (*Service, error) {
	if opts.LiveKitURL == "" || opts.APIKey == "" || opts.APISecret == "" {
		return nil, errors.New("devjwt: LiveKit URL, API key and secret are required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devjwt: listen: %w", err)
	}
	s := &Service{opts: opts, ln: ln, hc: &http.Client{Timeout: 10 * time.Second}, requests: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /get_token", s.getToken)
	mux.HandleFunc("POST /sfu/get", s.sfuGet)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.srv = &http.Server{Handler: cors(mux), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is the livekit_service_url clients put in their memberships.
func (s *Service) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the service.
func (s *Service) Close() error { return s.srv.Close() }

// Requests returns how often each endpoint was called, by path.
func (s *Service) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// Issued returns the tokens handed out so far.
func (s *Service) Issued() []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Grant(nil), s.issued...)
}

type openIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

type matrixError struct {
	status  int
	errcode string
	msg     string
}

func (e *matrixError) Error() string { return e.msg }

func (s *Service) count(path string) {
	s.mu.Lock()
	s.requests[path]++
	s.mu.Unlock()
}

func (s *Service) getToken(w http.ResponseWriter, r *http.Request) {
	s.count("/get_token")
	if s.opts.NoGetToken {
		writeError(w, &matrixError{http.StatusNotFound, "M_NOT_FOUND", "no such endpoint"})
		return
	}
	var req struct {
		RoomID      string      `json:"room_id"`
		SlotID      string      `json:"slot_id"`
		OpenIDToken openIDToken `json:"openid_token"`
		Member      struct {
			ID              string `json:"id"`
			ClaimedUserID   string `json:"claimed_user_id"`
			ClaimedDeviceID string `json:"claimed_device_id"`
		} `json:"member"`
	}
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.RoomID == "" || req.SlotID == "" || req.Member.ID == "" || req.Member.ClaimedUserID == "" || req.Member.ClaimedDeviceID == "" {
		writeError(w, &matrixError{http.StatusBadRequest, "M_BAD_JSON", "missing room_id, slot_id or member fields"})
		return
	}
	user, err := s.verify(r.Context(), req.OpenIDToken)
	if err != nil {
		writeError(w, err)
		return
	}
	if user != req.Member.ClaimedUserID {
		writeError(w, &matrixError{http.StatusUnauthorized, "M_UNAUTHORIZED", "claimed user does not match the token"})
		return
	}
	room := matrixrtc.RoomAlias(req.RoomID, req.SlotID)
	if s.opts.LegacyRoomNames {
		room = req.RoomID
	}
	s.answer(w, r, "/get_token", user, room, matrixrtc.HashedIdentity(user, req.Member.ClaimedDeviceID, req.Member.ID))
}

func (s *Service) sfuGet(w http.ResponseWriter, r *http.Request) {
	s.count("/sfu/get")
	var req struct {
		Room        string      `json:"room"`
		OpenIDToken openIDToken `json:"openid_token"`
		DeviceID    string      `json:"device_id"`
	}
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Room == "" || req.DeviceID == "" {
		writeError(w, &matrixError{http.StatusBadRequest, "M_BAD_JSON", "missing room or device_id"})
		return
	}
	user, err := s.verify(r.Context(), req.OpenIDToken)
	if err != nil {
		writeError(w, err)
		return
	}
	room := matrixrtc.RoomAlias(req.Room, matrixrtc.MainSlot)
	if s.opts.LegacyRoomNames {
		room = req.Room
	}
	s.answer(w, r, "/sfu/get", user, room, user+":"+req.DeviceID)
}

func (s *Service) answer(w http.ResponseWriter, r *http.Request, endpoint, user, room, identity string) {
	if err := s.createRoom(r.Context(), room); err != nil {
		writeError(w, &matrixError{http.StatusInternalServerError, "M_UNKNOWN", "create room: " + err.Error()})
		return
	}
	yes := true
	at := auth.NewAccessToken(s.opts.APIKey, s.opts.APISecret).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room, CanPublish: &yes, CanSubscribe: &yes, CanUpdateOwnMetadata: &yes}).
		SetIdentity(identity).
		SetValidFor(time.Hour)
	token, err := at.ToJWT()
	if err != nil {
		writeError(w, &matrixError{http.StatusInternalServerError, "M_UNKNOWN", "mint token: " + err.Error()})
		return
	}
	s.mu.Lock()
	s.issued = append(s.issued, Grant{Endpoint: endpoint, UserID: user, Room: room, Identity: identity})
	s.mu.Unlock()
	s.opts.Logger.Info().Str("endpoint", endpoint).Str("user_id", user).Str("identity", identity).Str("livekit_room", room).Msg("Issued a LiveKit token")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"url": s.opts.LiveKitURL, "jwt": token})
}

// createRoom creates the LiveKit room as lk-jwt-service does for users of its own
// homeservers (the token itself does not allow creating rooms).
func (s *Service) createRoom(ctx context.Context, room string) error {
	if s.opts.LiveKitHTTPURL == "" {
		return nil
	}
	rc := lksdk.NewRoomServiceClient(s.opts.LiveKitHTTPURL, s.opts.APIKey, s.opts.APISecret)
	_, err := rc.CreateRoom(ctx, &livekit.CreateRoomRequest{Name: room, EmptyTimeout: 5 * 60, DepartureTimeout: 20})
	return err
}

// verify asks the token's homeserver who it belongs to.
func (s *Service) verify(ctx context.Context, tok openIDToken) (string, error) {
	if tok.AccessToken == "" || tok.MatrixServerName == "" {
		return "", &matrixError{http.StatusBadRequest, "M_BAD_JSON", "openid_token without access_token or matrix_server_name"}
	}
	base, ok := s.opts.Homeservers[tok.MatrixServerName]
	if !ok {
		return "", &matrixError{http.StatusUnauthorized, "M_UNAUTHORIZED", "unknown homeserver " + tok.MatrixServerName}
	}
	u := base + "/_matrix/federation/v1/openid/userinfo?access_token=" + url.QueryEscape(tok.AccessToken)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return "", &matrixError{http.StatusInternalServerError, "M_UNKNOWN", "userinfo: " + err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", &matrixError{http.StatusUnauthorized, "M_UNAUTHORIZED", fmt.Sprintf("homeserver refused the token: %d %s", resp.StatusCode, body)}
	}
	var info struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.Sub == "" {
		return "", &matrixError{http.StatusUnauthorized, "M_UNAUTHORIZED", "userinfo without sub"}
	}
	return info.Sub, nil
}

// cors lets pages of other origins call the service, as lk-jwt-service does: Element Call
// (and the browser tests' pages) run on another origin than the JWT service, and a JSON POST
// from there is preceded by a preflight OPTIONS request.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(v); err != nil {
		return &matrixError{http.StatusBadRequest, "M_BAD_JSON", "bad request body: " + err.Error()}
	}
	return nil
}

func writeError(w http.ResponseWriter, err error) {
	var me *matrixError
	if !errors.As(err, &me) {
		me = &matrixError{http.StatusInternalServerError, "M_UNKNOWN", err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(me.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errcode": me.errcode, "error": me.msg})
}
