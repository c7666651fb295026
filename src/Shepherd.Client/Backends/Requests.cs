using System.Text.Json.Nodes;

namespace Shepherd.Client.Backends;

/// <summary>Request bodies for APIs that take no prompts: a prompt becomes the endpoint's own body.</summary>
internal static class Requests
{
    /// <summary>The answer length asked for when a prompt goes to an API that requires one.</summary>
    public const int DefaultMaxTokens = 1024;

    public static JsonObject BodyOf(BatchItem item, string endpoint, string? model)
    {
        var body = item.Body is { } given ? (JsonObject)given.DeepClone() : FromPrompt(item.Prompt!, endpoint);
        if (model is not null && !body.ContainsKey("model"))
        {
            body["model"] = model;
        }

        return body;
    }

    private static JsonObject FromPrompt(string prompt, string endpoint) => endpoint switch
    {
        "/v1/embeddings" or "/v1/responses" => new JsonObject { ["input"] = prompt },
        "/v1/completions" => new JsonObject { ["prompt"] = prompt },
        "/v1/messages" => new JsonObject { ["max_tokens"] = DefaultMaxTokens, ["messages"] = UserMessage(prompt) },
        _ => new JsonObject { ["messages"] = UserMessage(prompt) },
    };

    private static JsonArray UserMessage(string prompt) => [new JsonObject { ["role"] = "user", ["content"] = prompt }];
}
