package testmedia

import (
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Connect signals two peer connections of one process to each other without a server:
// an offer from offerer, the answer from answerer, every candidate inside the descriptions.
func Connect(offerer, answerer *webrtc.PeerConnection) error {
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	<-gathered
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		return fmt.Errorf("take offer: %w", err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set answer: %w", err)
	}
	<-gathered
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		return fmt.Errorf("take answer: %w", err)
	}
	return nil
}
