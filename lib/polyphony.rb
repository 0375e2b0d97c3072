# frozen_string_literal: true

require 'monitor'
require_relative 'polyphony/version'
require 'polyphony/polyphony_ext'
require_relative 'polyphony/core/exceptions'
require_relative 'polyphony/core/hooks'
require_relative 'polyphony/extensions/exception'
require_relative 'polyphony/core/queue'
require_relative 'polyphony/core/event'
require_relative 'polyphony/core/sync'
require_relative 'polyphony/extensions/fiber'
require_relative 'polyphony/core/supervise'
require_relative 'polyphony/extensions/thread'
require_relative 'polyphony/core/timeouts'
require_relative 'polyphony/core/throttler'
require_relative 'polyphony/extensions/object'
require_relative 'polyphony/extensions/timeout'
require_relative 'polyphony/core/resource_pool'
require_relative 'polyphony/core/timer'
require_relative 'polyphony/core/thread_pool'
require_relative 'polyphony/core/fiber_scheduler'
require_relative 'polyphony/core/backend_ops'
require_relative 'polyphony/core/backend_functions'
require_relative 'polyphony/extensions/io'
require_relative 'polyphony/extensions/io_select'
require_relative 'polyphony/core/pipe'
require_relative 'polyphony/core/compression'
require_relative 'polyphony/extensions/socket'
require_relative 'polyphony/extensions/openssl'
require_relative 'polyphony/net'
require_relative 'polyphony/extensions/process'
require_relative 'polyphony/extensions/kernel'
require_relative 'polyphony/core/stdlib_constants'
require_relative 'polyphony/core/process_setup'
require_relative 'polyphony/core/debug_server'

# Fine-grained structured concurrency on fibers, with a native (Rust)
# io_uring/epoll backend per thread.
module Polyphony
end

Polyphony.__replace_stdlib_constants__
Polyphony.__setup_process__

# IRB reads its input with the stock Kernel#gets.
require_relative 'polyphony/adapters/irb' if defined?(IRB)
