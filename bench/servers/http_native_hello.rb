# frozen_string_literal: true

# Polyphony::HTTP's native handler API, hello world (issue 22 benchmark).
require 'polyphony/http'

Polyphony::HTTP.serve('127.0.0.1', Integer(ARGV[0] || 7002)) do |req|
  req.respond('Hello, world!', 'Content-Type' => 'text/plain')
end
