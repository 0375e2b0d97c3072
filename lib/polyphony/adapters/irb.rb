# frozen_string_literal: true

# `require 'polyphony/adapters/irb'` (loaded by `require 'polyphony'` when
# IRB is already loaded): IRB reads its input with the stock `Kernel#gets`,
# so the console works in a process that uses polyphony.
require 'polyphony'

# IRB's input.
module Kernel
  # The stock `gets` (polyphony's reads `$stdin` through the backend).
  def gets(*args, **opts)
    orig_gets(*args, **opts)
  end
  module_function :gets
end
