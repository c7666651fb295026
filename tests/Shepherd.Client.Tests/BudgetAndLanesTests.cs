using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>A batch's budget on the way to a server (and refused by the APIs that keep none), and the lanes a server reports.</summary>
public sealed class BudgetAndLanesTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    private static NewBatch Prompts(decimal? budget, int count = 2) => new()
    {
        Model = "gpt-4o-mini",
        BudgetUsd = budget,
        Requests = [.. Enumerable.Range(0, count).Select(i => BatchItem.FromPrompt($"r{i}", $"question {i}"))],
    };

    [Fact]
    public async Task ABudget_ReachesAShepherdServer_FromAnInlineBatchAndAFile()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientTests.ClientOf(server);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));

        var inline = await client.CreateBatchAsync(Prompts(0.5m), Ct);
        var fromFile = await client.CreateBatchFromFileAsync(file, new FileBatchOptions { BudgetUsd = 0.25m }, Ct);
        var broke = await client.CreateBatchAsync(Prompts(0m), Ct);

        Assert.Equal(0.5m, (await server.GetAsync($"/v1/batches/{inline.Id}")).Body.GetProperty("budget_usd").GetDecimal());
        Assert.Equal(0.25m, (await server.GetAsync($"/v1/batches/{fromFile.Id}")).Body.GetProperty("budget_usd").GetDecimal());
        // A budget of nothing is kept too: nothing is sent, and each request says why.
        var done = await client.WaitForCompletionAsync(broke.Id, cancellationToken: Ct);
        Assert.Equal((0L, 2L), (done.Batch.Succeeded, done.Batch.Failed));
        Assert.All(await client.GetResultsAsync(broke.Id, Ct).ToListAsync(Ct), result => Assert.Equal("budget_exceeded", result.Error!.Code));
    }

    [Theory]
    [InlineData(BatchApi.OpenAI)]
    [InlineData(BatchApi.Anthropic)]
    public async Task ABudget_IsRefusedByTheOpenAIAndAnthropicApis_BeforeAnythingIsSent(BatchApi api)
    {
        using var client = ClientTests.SendingNothing(api, out var handler);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), api == BatchApi.Anthropic ? BatchFiles.Anthropic(2) : BatchFiles.OpenAIChat(2));

        var inline = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchAsync(Prompts(1m), Ct));
        var fromFile = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(file, new FileBatchOptions { BudgetUsd = 1m }, Ct));

        Assert.Contains("keeps no budget", inline.Message, StringComparison.Ordinal);
        Assert.Contains("keeps no budget", fromFile.Message, StringComparison.Ordinal);
        Assert.Empty(handler.Received);
    }

    [Fact]
    public async Task ABatchsLanes_AreReadFromTheServer_WithTheKeyRefusalAndItsNextProbe()
    {
        // The server presents its own upstream key; this provider takes another.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ApiKey = "sk-not-the-servers" });
        using var client = ClientTests.ClientOf(server);
        var created = await client.CreateBatchAsync(Prompts(null, count: 5), Ct);

        var batch = await Poll.UntilAsync(() => client.GetBatchAsync(created.Id, Ct), b => b.Lanes.Any(l => l.IsStopped), cancellationToken: Ct);

        Assert.Equal(BatchStatus.InProgress, batch.Status);
        var lane = Assert.Single(batch.Lanes);
        Assert.Equal(("sim", "gpt-4o-mini", "key_refused"), (lane.Upstream, lane.Model, lane.State));
        Assert.StartsWith("HTTP 401: Incorrect API key provided", lane.Reason, StringComparison.Ordinal);
        Assert.NotNull(lane.Since);
        Assert.True(lane.NextProbeAt > lane.Since, $"next probe {lane.NextProbeAt} is not after {lane.Since}");
    }

    [Fact]
    public async Task ABatchSchema_ReachesAShepherdServer_AndTheBatchSaysHowItsAnswersCameOut()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), BrokenJsonRate = 0.5 });
        using var client = ClientTests.ClientOf(server);
        var requests = BatchFiles.OpenAIStructured(20, schema: null);
        var schema = System.Text.Json.Nodes.JsonNode.Parse(BatchFiles.ReviewSchema)!.AsObject();

        var created = await client.CreateBatchAsync(new NewBatch
        {
            Model = "gpt-4.1-mini",
            MaxInvalidAttempts = 1,
            OutputSchema = schema,
            Requests = [.. requests.Select(r => BatchItem.FromBody(r.CustomId, System.Text.Json.Nodes.JsonNode.Parse(r.Body)!.AsObject()))],
        }, Ct);
        var done = (await client.WaitForCompletionAsync(created.Id, cancellationToken: Ct)).Batch;

        // The requests ask for any JSON object, which their own json_object wins for: half the answers break, and are asked once more.
        var (_, stored) = await server.GetAsync($"/v1/batches/{created.Id}");
        Assert.Equal(20, stored.GetProperty("output_checks").GetProperty("checked").GetInt64());
        Assert.Equal(20, done.Output.ValidFirst + done.Output.ValidReasked + done.Output.Invalid);
        Assert.True(done.Output.Reasked > 0 && done.Output.ReaskCostUsd > 0, done.Raw.GetRawText());
        Assert.Equal(done.Output.Invalid, done.Failed);
    }

    [Theory]
    [InlineData(BatchApi.OpenAI)]
    [InlineData(BatchApi.Anthropic)]
    public async Task ABatchSchema_IsRefusedByTheOpenAIAndAnthropicApis_BeforeAnythingIsSent(BatchApi api)
    {
        using var client = ClientTests.SendingNothing(api, out var handler);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), api == BatchApi.Anthropic ? BatchFiles.Anthropic(2) : BatchFiles.OpenAIChat(2));

        var inline = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchAsync(Prompts(null) with { MaxInvalidAttempts = 1 }, Ct));
        var fromFile = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(file, new FileBatchOptions { OutputSchema = [] }, Ct));

        Assert.Contains("checks no answer against a schema", inline.Message, StringComparison.Ordinal);
        Assert.Contains("checks no answer against a schema", fromFile.Message, StringComparison.Ordinal);
        Assert.Empty(handler.Received);
    }
}

