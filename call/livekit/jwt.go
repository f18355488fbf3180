package livekit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// Access is what a JWT service hands out: where the SFU is and a token for one room.
type Access struct {
	// URL is the SFU's signalling URL (ws:// or wss://).
	URL string
	// Token is the LiveKit JWT.
	Token string
	// Room is the LiveKit room name, from the token's video grant.
	Room string
	// Identity is the participant identity the token grants, from its subject.
	Identity string
	// Expires is when the token stops being accepted for joining.
	Expires time.Time
	// Endpoint says which request worked: "get_token" or "sfu/get".
	Endpoint string
}

// tokenRequest says who asks for access to which room's call.
type tokenRequest struct {
	ServiceURL string
	RoomID     id.RoomID
	UserID     id.UserID
	DeviceID   id.DeviceID
	MemberID   string
	OpenID     *mautrix.RespOpenIDToken
}

// openIDBody is the OpenID token as the services expect it.
type openIDBody struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// Limits on what a JWT service may send back.
const (
	maxServiceAnswer = 64 << 10
	tokenTimeout     = 20 * time.Second
)

// checkServiceURL accepts absolute http(s) URLs without credentials.
func checkServiceURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w %q", matrixrtc.ErrServiceURL, s)
	}
	return u, nil
}

// fetchAccess asks the focus' JWT service for a token: first the current POST /get_token,
// then the legacy POST /sfu/get (services before lk-jwt-service 0.4 only have that one), as
// Element Call does for SFUs it does not publish on.
func fetchAccess(ctx context.Context, hc *http.Client, req tokenRequest) (Access, error) {
	if _, err := checkServiceURL(req.ServiceURL); err != nil {
		return Access{}, err
	}
	if req.OpenID == nil {
		return Access{}, errors.New("no openid token")
	}
	oid := openIDBody{AccessToken: req.OpenID.AccessToken, TokenType: req.OpenID.TokenType, MatrixServerName: req.OpenID.MatrixServerName, ExpiresIn: int64(req.OpenID.ExpiresIn)}
	if oid.TokenType == "" {
		oid.TokenType = "Bearer"
	}
	base := strings.TrimRight(req.ServiceURL, "/")
	current := map[string]any{
		"room_id":      req.RoomID,
		"slot_id":      matrixrtc.MainSlot,
		"openid_token": oid,
		"member": map[string]string{
			"id":                req.MemberID,
			"claimed_user_id":   string(req.UserID),
			"claimed_device_id": string(req.DeviceID),
		},
	}
	acc, err1 := postForAccess(ctx, hc, base+"/get_token", current)
	if err1 == nil {
		acc.Endpoint = "get_token"
		return acc, nil
	}
	if ctx.Err() != nil {
		return Access{}, err1
	}
	legacy := map[string]any{"room": req.RoomID, "openid_token": oid, "device_id": req.DeviceID}
	acc, err2 := postForAccess(ctx, hc, base+"/sfu/get", legacy)
	if err2 == nil {
		acc.Endpoint = "sfu/get"
		return acc, nil
	}
	return Access{}, fmt.Errorf("JWT service %s refused both requests: /get_token: %v; /sfu/get: %v", base, err1, err2)
}

// serviceError is a non-2xx answer from a JWT service.
type serviceError struct {
	Status  int
	ErrCode string `json:"errcode"`
	Message string `json:"error"`
}

func (e *serviceError) Error() string {
	if e.ErrCode != "" {
		return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.ErrCode, e.Message)
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

func postForAccess(ctx context.Context, hc *http.Client, endpoint string, body any) (Access, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return Access{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
	if err != nil {
		return Access{}, err
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(r)
	if err != nil {
		return Access{}, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxServiceAnswer+1))
	if err != nil {
		return Access{}, fmt.Errorf("read answer: %w", err)
	}
	if len(answer) > maxServiceAnswer {
		return Access{}, fmt.Errorf("answer larger than %d bytes", maxServiceAnswer)
	}
	if resp.StatusCode/100 != 2 {
		se := &serviceError{Status: resp.StatusCode}
		_ = json.Unmarshal(answer, se)
		se.Message = clip(se.Message, 200)
		se.ErrCode = clip(se.ErrCode, 64)
		return Access{}, se
	}
	var out struct {
		URL string `json:"url"`
		JWT string `json:"jwt"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		return Access{}, fmt.Errorf("answer is not {url, jwt}: %w", err)
	}
	return parseAccess(out.URL, out.JWT)
}

// parseAccess checks the SFU URL and reads the room, identity and expiry from the token's
// payload (the bot cannot verify the signature; the SFU does).
func parseAccess(sfuURL, token string) (Access, error) {
	u, err := url.Parse(sfuURL)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws" && u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Access{}, fmt.Errorf("SFU url %q is not a ws(s) URL", clip(sfuURL, 200))
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(token) > 16<<10 {
		return Access{}, errors.New("jwt is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Access{}, fmt.Errorf("jwt payload: %w", err)
	}
	var claims struct {
		Sub   string `json:"sub"`
		Exp   int64  `json:"exp"`
		Video struct {
			Room string `json:"room"`
		} `json:"video"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Access{}, fmt.Errorf("jwt payload: %w", err)
	}
	if claims.Video.Room == "" || len(claims.Video.Room) > 512 {
		return Access{}, errors.New("jwt grants no room")
	}
	a := Access{URL: sfuURL, Token: token, Room: claims.Video.Room, Identity: claims.Sub}
	if claims.Exp > 0 {
		a.Expires = time.Unix(claims.Exp, 0)
	}
	return a, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
