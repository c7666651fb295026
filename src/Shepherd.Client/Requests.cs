using System.Text.Json.Nodes;

namespace Shepherd.Client;

/// <summary>
/// One request of a batch: a <see cref="Prompt"/> (a one-message chat request, or whatever the
/// endpoint takes as its input), or a full <see cref="Body"/> as the endpoint expects it.
/// </summary>
public sealed record BatchItem
{
    private BatchItem(string customId, string? prompt, JsonObject? body, ChatRequest? chat = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(customId);
        CustomId = customId;
        Prompt = prompt;
        Body = body;
        Chat = chat;
    }

    /// <summary>The request's id within its batch; results carry it back.</summary>
    public string CustomId { get; }

    /// <summary>The prompt, for a request given as one.</summary>
    public string? Prompt { get; }

    /// <summary>The full body, for a request given as one.</summary>
    public JsonObject? Body { get; }

    /// <summary>The typed chat request, for a request given as one.</summary>
    public ChatRequest? Chat { get; }

    /// <summary>A request of one prompt.</summary>
    public static BatchItem FromPrompt(string customId, string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return new BatchItem(customId, prompt, null);
    }

    /// <summary>
    /// A typed chat request (system prompt, message, answer length, response format), written as
    /// the batch's endpoint expects it: <c>/v1/chat/completions</c> or <c>/v1/messages</c>.
    /// </summary>
    public static BatchItem FromChat(string customId, ChatRequest chat)
    {
        ArgumentNullException.ThrowIfNull(chat);
        return new BatchItem(customId, null, null, chat);
    }

    /// <summary>A request with its full body, as the endpoint expects it.</summary>
    public static BatchItem FromBody(string customId, JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        return new BatchItem(customId, null, body);
    }
}

/// <summary>The order of a batch among others sharing a provider.</summary>
public enum BatchPriority
{
    /// <summary>Sent after normal and high batches on the same provider.</summary>
    Low,
    /// <summary>The default.</summary>
    Normal,
    /// <summary>Sent before normal and low batches on the same provider.</summary>
    High,
}

/// <summary>How a Shepherd server sends a batch's requests.</summary>
public enum BatchMode
{
    /// <summary>One by one, as fast as the provider's limits allow, at its list price.</summary>
    Realtime,

    /// <summary>Handed to the provider's own batch API, at its batch price; the provider takes up to 24 hours.</summary>
    Native,

    /// <summary>On the provider's flex tier (OpenAI's <c>service_tier: "flex"</c>), at the batch price.</summary>
    Flex,

    /// <summary>
    /// The server plans it: each request goes by the provider's batch API or flex tier where it has
    /// one, and what is still open goes in realtime in time for the deadline.
    /// </summary>
    Auto,
}

/// <summary>The names a Shepherd server gives <see cref="BatchMode"/> values.</summary>
public static class BatchModeNames
{
    private static readonly (BatchMode Mode, string Name)[] Names =
    [
        (BatchMode.Realtime, "realtime"),
        (BatchMode.Native, "native"),
        (BatchMode.Flex, "flex"),
        (BatchMode.Auto, "auto"),
    ];

    /// <summary>The mode as a Shepherd server writes it, such as <c>auto</c>.</summary>
    public static string ToApiName(this BatchMode mode) => Names.Where(n => n.Mode == mode).Select(n => n.Name).FirstOrDefault()
        ?? throw new ArgumentOutOfRangeException(nameof(mode), mode, "Not a batch mode.");

    /// <summary>The mode an API name stands for, or null for a name this client does not know (or none).</summary>
    public static BatchMode? FromApiName(string? name) => Names.Where(n => n.Name == name).Select(n => (BatchMode?)n.Mode).FirstOrDefault();
}

/// <summary>A batch to create.</summary>
public sealed record NewBatch
{
    /// <summary>The requests, each with a custom id unique in the batch.</summary>
    public required IReadOnlyList<BatchItem> Requests { get; init; }

    /// <summary>The model of every request whose body names none.</summary>
    public string? Model { get; init; }

    /// <summary>
    /// The url the requests go to.
    /// <value>The default is <c>/v1/chat/completions</c> (<c>/v1/messages</c> on the Anthropic API).</value>
    /// </summary>
    public string? Endpoint { get; init; }

    /// <summary>The order among batches sharing a provider.</summary>
    public BatchPriority Priority { get; init; } = BatchPriority.Normal;

    /// <summary>Up to 16 pairs, keys up to 64 characters, values up to 512.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>How long the batch may take; unfinished requests then expire. None (a Shepherd server) or 24 hours (the OpenAI and Anthropic APIs) when null.</summary>
    public TimeSpan? CompletionWindow { get; init; }

    /// <summary>
    /// When the batch must be done, counted from its creation: the same value as
    /// <see cref="CompletionWindow"/>, by the name a Shepherd server plans with (in mode
    /// <see cref="BatchMode.Auto"/> what is still open goes in realtime in time for it).
    /// </summary>
    public TimeSpan? Deadline { get => CompletionWindow; init => CompletionWindow = value; }

    /// <summary>
    /// How a Shepherd server sends the requests; null lets it choose (<see cref="BatchMode.Auto"/>
    /// when the batch has a deadline and an upstream has a batch API or flex tier for it, realtime
    /// otherwise). The OpenAI and Anthropic APIs take none.
    /// </summary>
    public BatchMode? Mode { get; init; }

    /// <summary>The most the batch may cost, in US dollars; a Shepherd server sends a request only while it fits. Null for none.</summary>
    public decimal? BudgetUsd { get; init; }

    /// <summary>
    /// A JSON Schema every answer must fit (a request that asks for structured output of its own
    /// keeps its own): a Shepherd server checks each answer and asks again for one that does not
    /// parse or fit. Null for none. The OpenAI and Anthropic APIs check nothing.
    /// </summary>
    public System.Text.Json.Nodes.JsonObject? OutputSchema { get; init; }

    /// <summary>How often a Shepherd server asks again for an answer that does not fit before the request fails with <c>invalid_output</c>; null for the server's default (2).</summary>
    public int? MaxInvalidAttempts { get; init; }

    /// <summary>
    /// Whether a Shepherd server answers a request it answered for this key's tenant before from
    /// its answer cache, at no cost (false sends every request); null takes the server's setting.
    /// The OpenAI and Anthropic APIs keep no such cache.
    /// </summary>
    public bool? Cache { get; init; }

    /// <summary>
    /// Whether a Shepherd server's cache replays the answer to a request that asks for sampling
    /// (temperature above 0, <c>n</c> above 1) rather than send it again; null takes the server's setting.
    /// </summary>
    public bool? CacheSampled { get; init; }

    /// <summary>Makes a create safe to repeat: the same key returns the first batch. One is made up when null.</summary>
    public string? IdempotencyKey { get; init; }
}

/// <summary>How to create a batch from a JSONL file.</summary>
public sealed record FileBatchOptions
{
    /// <summary>The url every line names; the default is the first line's url.</summary>
    public string? Endpoint { get; init; }

    /// <summary>Up to 16 pairs, keys up to 64 characters, values up to 512.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>
    /// How long the batch may take; unfinished requests then expire.
    /// <value>The default is 24 hours.</value>
    /// </summary>
    public TimeSpan CompletionWindow { get; init; } = Backends.Requests.DefaultWindow;

    /// <summary>The same value as <see cref="CompletionWindow"/>, by the name a Shepherd server plans with.</summary>
    public TimeSpan Deadline { get => CompletionWindow; init => CompletionWindow = value; }

    /// <summary>
    /// How a Shepherd server sends the requests (sent as the metadata <c>shepherd_mode</c>); null
    /// lets it choose, as for <see cref="NewBatch.Mode"/>. The OpenAI and Anthropic APIs take none.
    /// </summary>
    public BatchMode? Mode { get; init; }

    /// <summary>The most the batch may cost, in US dollars; a Shepherd server sends a request only while it fits. Null for none.</summary>
    public decimal? BudgetUsd { get; init; }

    /// <summary>
    /// A JSON Schema every answer must fit (a request that asks for structured output of its own
    /// keeps its own): a Shepherd server checks each answer and asks again for one that does not
    /// parse or fit. Null for none. The OpenAI and Anthropic APIs check nothing.
    /// </summary>
    public System.Text.Json.Nodes.JsonObject? OutputSchema { get; init; }

    /// <summary>How often a Shepherd server asks again for an answer that does not fit before the request fails with <c>invalid_output</c>; null for the server's default (2).</summary>
    public int? MaxInvalidAttempts { get; init; }

    /// <summary>
    /// Whether a Shepherd server answers a request it answered for this key's tenant before from
    /// its answer cache, at no cost (false sends every request); null takes the server's setting.
    /// The OpenAI and Anthropic APIs keep no such cache.
    /// </summary>
    public bool? Cache { get; init; }

    /// <summary>
    /// Whether a Shepherd server's cache replays the answer to a request that asks for sampling
    /// (temperature above 0, <c>n</c> above 1) rather than send it again; null takes the server's setting.
    /// </summary>
    public bool? CacheSampled { get; init; }

    /// <summary>Makes the create safe to repeat; one is made up when null.</summary>
    public string? IdempotencyKey { get; init; }
}
