# frozen_string_literal: true

require 'polyphony'
require_relative 'http/connection'
require_relative 'http/request'
require_relative 'http/server'
require_relative 'http/workers'
require_relative 'http/rack_adapter'
require_relative 'http/rack_handler'

module Polyphony
  # An HTTP/1.1 server (`require 'polyphony/http'`): see docs/http.md.
  #
  #   Polyphony::HTTP.serve('0.0.0.0', 1234) { |req| req.respond("Hello\n") }
  module HTTP
  end
end
