using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>The client speaking the OpenAI Batch API, against the OpenAI door of a real server.</summary>
public sealed class OpenAIApiTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task InlineRequests_TravelAsAnUploadedFile_AndResultsComeFromTheOutputAndErrorFiles()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ContextTokens = 10 });
        using var client = ClientTests.ClientOf(server, api: BatchApi.OpenAI);

        var batch = await client.CreateBatchAsync(new NewBatch
        {
            Model = "gpt-4o-mini",
            Metadata = new Dictionary<string, string> { ["job"] = "openai" },
            Requests = [BatchItem.FromPrompt("ok", "hi"), BatchItem.FromPrompt("bad", "a prompt that is far longer than the small context of this model")],
        }, Ct);
        var done = await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct);
        var results = await client.GetResultsAsync(batch.Id, Ct).ToListAsync(Ct);

        Assert.NotNull(batch.InputFileId);
        Assert.Equal("openai", batch.Metadata["job"]);
        Assert.Equal((BatchStatus.Completed, 1L, 1L), (done.Batch.Status, done.Batch.Succeeded, done.Batch.Failed));
        Assert.Equal([("ok", ResultStatus.Succeeded), ("bad", ResultStatus.Failed)], results.Select(r => (r.CustomId, r.Status)));
        Assert.False(string.IsNullOrEmpty(results[0].Text));
        Assert.Equal("context_length_exceeded", results[1].Error!.Code);
        Assert.Equal(ResultStatus.Failed, (await client.GetResultAsync(batch.Id, "bad", Ct))!.Status);

        var retry = (await client.RetryFailedAsync(batch.Id, Ct))!;
        await client.WaitForCompletionAsync(retry.Id, cancellationToken: Ct);
        Assert.Equal(batch.Id, retry.Metadata["retry_of"]);
        Assert.Equal(["bad"], await client.GetResultsAsync(retry.Id, Ct).Select(r => r.CustomId).ToListAsync(Ct));
        Assert.Equal(retry.Id, (await client.RetryFailedAsync(batch.Id, Ct))!.Id);
    }

    [Fact]
    public async Task Listing_AndCancelling_WorkThroughTheOpenAIDialect()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(5), RequestsPerMinute = 120 });
        using var client = ClientTests.ClientOf(server, api: BatchApi.OpenAI);
        var batch = await client.CreateBatchAsync(new NewBatch { Model = "m", Requests = [.. Enumerable.Range(0, 40).Select(i => BatchItem.FromPrompt($"r{i}", "p"))] }, Ct);
        // The uploaded file is read while the batch validates; cancelled then, it would have no requests at all.
        await Poll.UntilAsync(() => client.GetBatchAsync(batch.Id, Ct), b => b.Status != BatchStatus.Validating, TimeSpan.FromSeconds(30), Ct);

        await client.CancelBatchAsync(batch.Id, Ct);
        var done = await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct);

        Assert.Equal(BatchStatus.Cancelled, done.Batch.Status);
        Assert.Equal(batch.Id, Assert.Single(await client.ListBatchesAsync(Ct).ToListAsync(Ct)).Id);
        Assert.Contains(ResultStatus.Cancelled, await client.GetResultsAsync(batch.Id, Ct).Select(r => r.Status).ToListAsync(Ct));
    }
}
