# frozen_string_literal: true

require 'polyphony/http'

module Rackup
  # rackup 2's server handlers (Rack 3: `rackup -s polyphony`).
  module Handler
    Polyphony = ::Polyphony::HTTP::RackHandler
    register :polyphony, Polyphony if respond_to?(:register)
  end
end
