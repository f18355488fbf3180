// LiveKit's own E2EE worker (livekit-client/e2ee-worker), bundled as a file the page starts.
import "livekit-client/e2ee-worker";
