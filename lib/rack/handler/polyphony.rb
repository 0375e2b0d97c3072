# frozen_string_literal: true

require 'polyphony/http'

module Rack
  # Rack 2's server handlers (`rackup -s polyphony`).
  module Handler
    Polyphony = ::Polyphony::HTTP::RackHandler
    register :polyphony, 'Rack::Handler::Polyphony' if respond_to?(:register)
  end
end
