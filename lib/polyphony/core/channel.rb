# frozen_string_literal: true

require 'polyphony'

module Polyphony
  # A queue whose receivers are stopped when it closes (opt-in:
  # `require 'polyphony/core/channel'`).
  class Channel < Queue
    alias receive shift

    # Closes the channel; fibers waiting in `receive` get Polyphony::MoveOn.
    def close
      flush_waiters(Polyphony::MoveOn.new)
      super
    end
  end
end
