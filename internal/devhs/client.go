package devhs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Account is a logged-in device of a user.
type Account struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

// Register creates a user through the client API's open registration
// (m.login.dummy) and returns its first device.
func (s *Server) Register(ctx context.Context, localpart, password string) (Account, error) {
	body := map[string]any{
		"username": localpart,
		"password": password,
		"auth":     map[string]string{"type": "m.login.dummy"},
	}
	var acc Account
	if err := s.call(ctx, http.MethodPost, "/_matrix/client/v3/register", "", body, &acc); err != nil {
		return Account{}, fmt.Errorf("registering %s: %w", localpart, err)
	}
	return acc, nil
}

// RegisterAdmin creates a user through the shared-secret admin API
// (/_synapse/admin/v1/register), optionally as a server admin.
func (s *Server) RegisterAdmin(ctx context.Context, localpart, password string, admin bool) (Account, error) {
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := s.call(ctx, http.MethodGet, "/_synapse/admin/v1/register", "", nil, &nonce); err != nil {
		return Account{}, fmt.Errorf("getting registration nonce for %s: %w", localpart, err)
	}
	role := "notadmin"
	if admin {
		role = "admin"
	}
	mac := hmac.New(sha1.New, []byte(s.secret))
	mac.Write([]byte(nonce.Nonce + "\x00" + localpart + "\x00" + password + "\x00" + role))
	body := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    admin,
		"mac":      hex.EncodeToString(mac.Sum(nil)),
	}
	var acc Account
	if err := s.call(ctx, http.MethodPost, "/_synapse/admin/v1/register", "", body, &acc); err != nil {
		return Account{}, fmt.Errorf("registering %s with the shared secret: %w", localpart, err)
	}
	return acc, nil
}

// Login logs a user in with a password. A non-empty deviceID reuses that
// device (and its keys), as a restarted bot does.
func (s *Server) Login(ctx context.Context, localpart, password, deviceID string) (Account, error) {
	body := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart},
		"password":   password,
	}
	if deviceID != "" {
		body["device_id"] = deviceID
	}
	var acc Account
	if err := s.call(ctx, http.MethodPost, "/_matrix/client/v3/login", "", body, &acc); err != nil {
		return Account{}, fmt.Errorf("logging in %s: %w", localpart, err)
	}
	return acc, nil
}

// Do sends a client API request as acc (no token when acc is zero) and
// decodes the JSON answer into out (when not nil). Tests use it for the few
// calls they make without a full Matrix client.
func (s *Server) Do(ctx context.Context, acc Account, method, path string, in, out any) error {
	return s.call(ctx, method, path, acc.AccessToken, in, out)
}

// HTTPError is a non-2xx answer of the homeserver.
type HTTPError struct {
	Status  int
	ErrCode string `json:"errcode"`
	Message string `json:"error"`
	Body    string
}

func (e *HTTPError) Error() string {
	if e.ErrCode != "" {
		return fmt.Sprintf("homeserver answered %d %s: %s", e.Status, e.ErrCode, e.Message)
	}
	return fmt.Sprintf("homeserver answered %d: %s", e.Status, e.Body)
}

func (s *Server) call(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL()+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		herr := &HTTPError{Status: resp.StatusCode, Body: string(data)}
		_ = json.Unmarshal(data, herr)
		return herr
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}
