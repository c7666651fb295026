using System.Collections.Concurrent;

namespace Shepherd.Engine.Dispatch;

/// <summary>Those who wait for batches to end, by batch id; thread-safe.</summary>
internal sealed class BatchWaiters
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _waiters = new(StringComparer.Ordinal);

    /// <summary>The batches someone waits for.</summary>
    public ICollection<string> BatchIds => _waiters.Keys;

    /// <summary>The wait for <paramref name="batchId"/>, registered now if it is the first.</summary>
    public Task Register(string batchId) =>
        _waiters.GetOrAdd(batchId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    /// <summary>Ends the wait for <paramref name="batchId"/>, if there is one.</summary>
    public void Release(string batchId)
    {
        if (_waiters.TryRemove(batchId, out var waiter))
        {
            waiter.TrySetResult();
        }
    }

    /// <summary>Forgets the wait for a batch that had ended already, without ending it.</summary>
    public void Forget(string batchId) => _waiters.TryRemove(batchId, out _);

    /// <summary>Fails every wait: the batches will not end in this run.</summary>
    public void FailAll(Exception exception)
    {
        foreach (var waiter in _waiters.Values)
        {
            waiter.TrySetException(exception);
        }
    }
}
