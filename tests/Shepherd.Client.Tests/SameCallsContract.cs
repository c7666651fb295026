using Shepherd.Server.Tests;
using Shepherd.Simulator;

namespace Shepherd.Client.Tests;

/// <summary>
/// What each call means when the batch is running, has ended, lacks a custom id or has nothing
/// to retry: the same on every backend (docs/client.md, "The same calls on every backend"). Each
/// backend's suite runs these against a real server's door of that dialect.
/// </summary>
public abstract class SameCallsContract
{
    /// <summary>Nineteen prompt tokens: over <see cref="Context"/>, a permanent failure upstream.</summary>
    private const string LongPrompt = "Please summarise this long review of a rather ordinary hotel.";

    private const int Context = 10;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    protected abstract BatchApi Api { get; }

    protected abstract string Model { get; }

    [Fact]
    public async Task ARunningBatch_RefusesResultsAndRetry_WithBatchNotEnded()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), RequestsPerMinute = 60 });
        using var client = ClientTests.ClientOf(server, api: Api);
        var batch = await client.CreateBatchAsync(new NewBatch { Model = Model, Requests = [.. Enumerable.Range(0, 30).Select(i => BatchItem.FromPrompt($"r{i}", "hi"))] }, Ct);
        using var folder = new Shepherd.Testing.TempDirectory();

        var results = await Assert.ThrowsAsync<BatchNotEndedException>(async () => await client.GetResultsAsync(batch.Id, Ct).ToListAsync(Ct));
        await Assert.ThrowsAsync<BatchNotEndedException>(() => client.GetResultAsync(batch.Id, "r0", Ct));
        await Assert.ThrowsAsync<BatchNotEndedException>(() => client.ExportResultsAsync(batch.Id, folder.File("out.jsonl"), Ct));
        await Assert.ThrowsAsync<BatchNotEndedException>(() => client.RetryFailedAsync(batch.Id, Ct));

        Assert.Equal(batch.Id, results.Batch!.Id);
        Assert.False(results.Batch.HasEnded);
        Assert.Contains("WaitForCompletionAsync", results.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(folder.Path));
    }

    [Fact]
    public async Task AnEndedBatch_WithNothingFailed_HasNoSuchCustomId_NothingToRetry_AndCancelsAsItEnded()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2) });
        using var client = ClientTests.ClientOf(server, api: Api);
        var batch = await client.CreateBatchAsync(new NewBatch { Model = Model, Requests = [BatchItem.FromPrompt("a", "hi"), BatchItem.FromPrompt("b", "hi")] }, Ct);
        var done = (await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct)).Batch;

        Assert.Null(await client.GetResultAsync(batch.Id, "no-such-request", Ct));
        Assert.Equal(ResultStatus.Succeeded, (await client.GetResultAsync(batch.Id, "b", Ct))!.Status);
        Assert.Null(await client.RetryFailedAsync(batch.Id, Ct));
        var cancelled = await client.CancelBatchAsync(batch.Id, Ct);
        Assert.Equal((BatchStatus.Completed, done.Succeeded), (cancelled.Status, cancelled.Succeeded));
        Assert.Equal([batch.Id], await client.ListBatchesAsync(Ct).Select(b => b.Id).ToListAsync(Ct));
    }

    [Fact]
    public async Task RetryingTwice_ReturnsTheSameRetryBatch()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = Context });
        using var client = ClientTests.ClientOf(server, api: Api);
        var batch = await client.CreateBatchAsync(new NewBatch { Model = Model, Requests = [BatchItem.FromPrompt("ok", "hi"), BatchItem.FromPrompt("bad", LongPrompt)] }, Ct);
        await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct);

        if (Api == BatchApi.Anthropic)
        {
            // The API keeps no request bodies: documented as not possible there.
            await Assert.ThrowsAsync<NotSupportedException>(() => client.RetryFailedAsync(batch.Id, Ct));
            return;
        }

        var first = await client.RetryFailedAsync(batch.Id, Ct);
        var second = await client.RetryFailedAsync(batch.Id, Ct);

        Assert.Equal(first!.Id, second!.Id);
        Assert.Equal(batch.Id, first.Metadata["retry_of"]);
        Assert.Equal(1, (await client.WaitForCompletionAsync(first.Id, cancellationToken: Ct)).Batch.Total);
        Assert.Equal(2, await client.ListBatchesAsync(Ct).CountAsync(Ct));
    }
}

/// <summary>The contract against a Shepherd server.</summary>
public sealed class ShepherdSameCallsTests : SameCallsContract
{
    protected override BatchApi Api => BatchApi.Shepherd;

    protected override string Model => "gpt-4o-mini";
}

/// <summary>The contract in the OpenAI Batch API's dialect (files and batches).</summary>
public sealed class OpenAISameCallsTests : SameCallsContract
{
    protected override BatchApi Api => BatchApi.OpenAI;

    protected override string Model => "gpt-4o-mini";
}

/// <summary>The contract in the Anthropic Message Batches API's dialect.</summary>
public sealed class AnthropicSameCallsTests : SameCallsContract
{
    protected override BatchApi Api => BatchApi.Anthropic;

    protected override string Model => "claude-sonnet-4-5";
}
