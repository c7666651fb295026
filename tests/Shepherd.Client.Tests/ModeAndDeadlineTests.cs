using Shepherd.Server.Tests;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>A batch's mode and deadline on the way to a server (and a mode refused by the APIs that take none), and the mode read back.</summary>
public sealed class ModeAndDeadlineTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    private static NewBatch Prompts(BatchMode? mode, TimeSpan? deadline = null) => new()
    {
        Model = "gpt-4o-mini",
        Mode = mode,
        Deadline = deadline,
        Requests = [.. Enumerable.Range(0, 2).Select(i => BatchItem.FromPrompt($"r{i}", $"question {i}"))],
    };

    [Fact]
    public async Task AModeAndADeadline_ReachAShepherdServer_FromAnInlineBatchAndAFile_AndTheModeIsReadBack()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientTests.ClientOf(server);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));

        var inline = await client.CreateBatchAsync(Prompts(BatchMode.Auto, TimeSpan.FromHours(6)), Ct);
        var fromFile = await client.CreateBatchFromFileAsync(file, new FileBatchOptions { Mode = BatchMode.Realtime, Deadline = TimeSpan.FromHours(2), Metadata = new Dictionary<string, string> { ["job"] = "j" } }, Ct);
        var unasked = await client.CreateBatchAsync(Prompts(null), Ct);
        var refused = await Assert.ThrowsAsync<ShepherdApiException>(() => client.CreateBatchAsync(Prompts(BatchMode.Native), Ct));

        Assert.Equal((BatchMode.Auto, TimeSpan.FromHours(6)), (inline.Mode, inline.ExpiresAt - inline.CreatedAt));
        Assert.Equal("6h", (await server.GetAsync($"/v1/batches/{inline.Id}")).Body.GetProperty("completion_window").GetString());
        Assert.Equal((BatchMode.Realtime, TimeSpan.FromHours(2)), (fromFile.Mode, fromFile.ExpiresAt - fromFile.CreatedAt));
        Assert.Equal(("realtime", "j"), (fromFile.Metadata["shepherd_mode"], fromFile.Metadata["job"]));
        Assert.Equal(BatchMode.Realtime, (await client.GetBatchAsync(unasked.Id, Ct)).Mode);
        Assert.Equal((400, "native_batch_unavailable"), (refused.StatusCode, refused.ErrorCode));
        foreach (var batch in new[] { inline, fromFile, unasked })
        {
            Assert.True((await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct)).AllSucceeded);
        }
    }

    [Theory]
    [InlineData(BatchApi.OpenAI)]
    [InlineData(BatchApi.Anthropic)]
    public async Task AMode_IsRefusedByTheOpenAIAndAnthropicApis_BeforeAnythingIsSent(BatchApi api)
    {
        using var client = ClientTests.SendingNothing(api, out var handler);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), api == BatchApi.Anthropic ? BatchFiles.Anthropic(2) : BatchFiles.OpenAIChat(2));

        var inline = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchAsync(Prompts(BatchMode.Native), Ct));
        var fromFile = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(file, new FileBatchOptions { Mode = BatchMode.Native }, Ct));

        Assert.Contains("takes no mode", inline.Message, StringComparison.Ordinal);
        Assert.Contains("takes no mode", fromFile.Message, StringComparison.Ordinal);
        Assert.Empty(handler.Received);
    }

    [Fact]
    public async Task AModeAndAMetadataShepherdModeThatDisagree_AreRefused_BeforeAnythingIsSent()
    {
        using var client = ClientTests.SendingNothing(BatchApi.Shepherd, out var handler);
        var file = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(2));
        var options = new FileBatchOptions { Mode = BatchMode.Native, Metadata = new Dictionary<string, string> { ["shepherd_mode"] = "flex" } };

        var error = await Assert.ThrowsAsync<ArgumentException>(() => client.CreateBatchFromFileAsync(file, options, Ct));

        Assert.Contains("shepherd_mode flex", error.Message, StringComparison.Ordinal);
        Assert.Empty(handler.Received);
    }

    [Fact]
    public void TheDeadline_IsTheCompletionWindowByAnotherName()
    {
        Assert.Equal(TimeSpan.FromMinutes(90), new NewBatch { Requests = [], Deadline = TimeSpan.FromMinutes(90) }.CompletionWindow);
        Assert.Equal(TimeSpan.FromHours(3), new FileBatchOptions { CompletionWindow = TimeSpan.FromHours(3) }.Deadline);
        Assert.Equal(TimeSpan.FromHours(24), new FileBatchOptions().Deadline);
        Assert.Equal(("flex", BatchMode.Auto, (BatchMode?)null), (BatchMode.Flex.ToApiName(), BatchModeNames.FromApiName("auto"), BatchModeNames.FromApiName("someday")));
    }
}
