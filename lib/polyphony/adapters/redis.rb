# frozen_string_literal: true

# `require 'polyphony/adapters/redis'`, kept for API
# compatibility. No patching is needed: the redis gem's Ruby driver talks
# through TCPSocket, whose waits park only the calling fiber.
require 'polyphony'
require 'redis'
