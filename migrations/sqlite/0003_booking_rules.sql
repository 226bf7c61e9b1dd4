-- Booking rules per club (docs/domain.md "Booking rules"); the Postgres migration 0005 twin.
ALTER TABLE clubs ADD COLUMN booking_horizon_days INTEGER NOT NULL DEFAULT 30
    CHECK (booking_horizon_days >= 0);
ALTER TABLE clubs ADD COLUMN max_active_bookings INTEGER NOT NULL DEFAULT 4
    CHECK (max_active_bookings >= 0);
ALTER TABLE clubs ADD COLUMN cancellation_cutoff_minutes INTEGER NOT NULL DEFAULT 120
    CHECK (cancellation_cutoff_minutes >= 0);
