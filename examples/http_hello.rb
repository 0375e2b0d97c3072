# frozen_string_literal: true

# Hello world on Polyphony::HTTP's native handler API:
#   ruby -Ilib examples/http_hello.rb     then   curl http://127.0.0.1:1234/?name=you
require 'polyphony/http'

puts 'listening on http://127.0.0.1:1234'
Polyphony::HTTP.serve('127.0.0.1', 1234) do |req|
  name = req.query['name'] || 'world'
  req.respond("Hello, #{name}!\n", 'Content-Type' => 'text/plain')
end
