using Microsoft.Extensions.Time.Testing;

namespace Shepherd.Testing;

/// <summary>Drives code that waits on a <see cref="FakeTimeProvider"/>: time moves only when the test moves it.</summary>
public static class FakeClock
{
    /// <summary>
    /// Advances <paramref name="time"/> by <paramref name="step"/>, yielding between steps, until
    /// <paramref name="task"/> completes. Time moves only while <paramref name="mayAdvance"/> holds,
    /// so work that runs on real threads (a request in flight) is never overtaken by the clock.
    /// Fails after <paramref name="maxSteps"/> steps instead of hanging.
    /// </summary>
    public static async Task RunUntilAsync(this FakeTimeProvider time, Task task, TimeSpan step, Func<bool>? mayAdvance = null, int maxSteps = 200_000)
    {
        var steps = 0;
        var held = 0;
        while (!task.IsCompleted)
        {
            // Let continuations that are ready run before time moves on.
            for (var spin = 0; spin < 20 && !task.IsCompleted; spin++)
            {
                await Task.Yield();
            }

            if (task.IsCompleted)
            {
                break;
            }

            if (mayAdvance?.Invoke() == false)
            {
                if (++held > maxSteps * 100)
                {
                    throw new TimeoutException("The clock was held back for too long; the work it waits for never finished.");
                }

                continue;
            }

            if (++steps > maxSteps)
            {
                throw new TimeoutException($"The task did not complete within {maxSteps} steps of {step}.");
            }

            time.Advance(step);
        }

        await task;
    }
}
