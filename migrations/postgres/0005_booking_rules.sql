-- Booking rules per club (docs/domain.md "Booking rules"): how many days ahead a court may be
-- booked, how many live bookings a player may hold at the club at once (staff and above are
-- exempt), and until how many minutes before the start a player may cancel.
ALTER TABLE clubs
    ADD COLUMN booking_horizon_days INTEGER NOT NULL DEFAULT 30
        CONSTRAINT clubs_booking_horizon_days_range CHECK (booking_horizon_days >= 0),
    ADD COLUMN max_active_bookings INTEGER NOT NULL DEFAULT 4
        CONSTRAINT clubs_max_active_bookings_range CHECK (max_active_bookings >= 0),
    ADD COLUMN cancellation_cutoff_minutes INTEGER NOT NULL DEFAULT 120
        CONSTRAINT clubs_cancellation_cutoff_minutes_range CHECK (cancellation_cutoff_minutes >= 0);
