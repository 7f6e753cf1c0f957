"""FCM push notifications: who gets a push for an event, what it says, and sending it."""
