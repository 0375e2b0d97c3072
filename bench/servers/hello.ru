# frozen_string_literal: true

# The Rack hello world every Rack server of the HTTP-server benchmark runs.
run ->(_env) { [200, { 'content-type' => 'text/plain' }, ['Hello, world!']] }
