package bot

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// Nothing a request carries reaches the log, at any level, whether the request works or
// fails: here a summary with a download link's token.
func TestRequestBodiesStayOutOfTheLog(t *testing.T) {
	hs := newFakeHS(t)
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.TraceLevel)
	client, err := mautrix.NewClient(hs.srv.URL, testBot, "token")
	if err != nil {
		t.Fatal(err)
	}
	client.Log = log.With().Str("component", "matrix").Logger()
	quietRequestLog(client, client.Log)
	const secret = "https://rec.example.org/download/SECRETtoken0123456789ab/a.ogg?exp=1&sig=SIGNATURE"
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: "Recording saved " + secret}
	if _, err := client.SendMessageEvent(context.Background(), room, event.EventMessage, content); err != nil {
		t.Fatal(err)
	}
	hs.mu.Lock()
	hs.failSend = 1
	hs.mu.Unlock()
	if _, err := client.SendMessageEvent(context.Background(), room, event.EventMessage, content); err == nil {
		t.Fatal("the failing send worked")
	}
	out := buf.String()
	for _, leak := range []string{"SECRETtoken", "SIGNATURE", "Recording saved"} {
		if strings.Contains(out, leak) {
			t.Errorf("the log has %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, `"status":500`) || !strings.Contains(out, "/send/m.room.message/") {
		t.Errorf("the requests are not logged at all:\n%s", out)
	}
}
