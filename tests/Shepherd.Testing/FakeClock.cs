using Microsoft.Extensions.Time.Testing;

namespace Shepherd.Testing;

/// <summary>Drives code that waits on a <see cref="FakeTimeProvider"/>: time moves only when the test moves it.</summary>
public static class FakeClock
{
    /// <summary>
    /// Advances <paramref name="time"/> by <paramref name="step"/>, yielding between steps, until
    /// <paramref name="task"/> completes. Fails after <paramref name="maxSteps"/> steps instead of hanging.
    /// </summary>
    public static async Task RunUntilAsync(this FakeTimeProvider time, Task task, TimeSpan step, int maxSteps = 200_000)
    {
        for (var i = 0; i < maxSteps && !task.IsCompleted; i++)
        {
            // Let continuations that are ready run before time moves on.
            for (var spin = 0; spin < 20 && !task.IsCompleted; spin++)
            {
                await Task.Yield();
            }

            time.Advance(step);
        }

        if (!task.IsCompleted)
        {
            throw new TimeoutException($"The task did not complete within {maxSteps} steps of {step}.");
        }

        await task;
    }
}
