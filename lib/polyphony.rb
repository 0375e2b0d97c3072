# frozen_string_literal: true

require_relative 'polyphony/version'
require 'polyphony/polyphony_ext'
require_relative 'polyphony/core/exceptions'
require_relative 'polyphony/extensions/exception'
require_relative 'polyphony/core/queue'
require_relative 'polyphony/extensions/fiber'
require_relative 'polyphony/extensions/thread'
require_relative 'polyphony/extensions/object'
require_relative 'polyphony/core/backend_functions'
require_relative 'polyphony/core/process_setup'

# Fine-grained structured concurrency on fibers, with a native (Rust)
# io_uring/epoll backend per thread.
module Polyphony
end

Polyphony.__setup_process__
