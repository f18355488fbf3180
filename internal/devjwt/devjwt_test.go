package devjwt

import (
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A page on another origin (Element Call, the browser tests) must be able to ask for a
// token: the preflight is answered and every answer carries the CORS header.
func TestCORS(t *testing.T) {
	s, err := Start(Options{LiveKitURL: "ws://127.0.0.1:1", APIKey: "k", APISecret: "secret", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	req, err := http.NewRequest(http.MethodOptions, s.URL()+"/sfu/get", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "http://127.0.0.1:9")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// A refused request still tells the page why (the browser hides answers without the header).
	resp, err = http.Post(s.URL()+"/sfu/get", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("refusal: %d %v", resp.StatusCode, resp.Header)
	}
}
