using System.Text;

namespace Shepherd.Micro;

/// <summary>Typical input lines and upstream answers, as the benchmarks feed them to the engine.</summary>
internal static class Samples
{
    /// <summary>The model every sample request names.</summary>
    public const string OpenAIModel = "gpt-4.1-mini";

    /// <summary>A short chat prompt, the size of a typical classification request.</summary>
    private const string Prompt = "Label the sentiment of this review as positive, negative or mixed: arrived two days late, but it works well and the battery lasts.";

    /// <summary>An OpenAI batch line for chat completions, as a user writes it.</summary>
    public static string OpenAILine(string customId) =>
        $$$"""{"custom_id":"{{{customId}}}","method":"POST","url":"/v1/chat/completions","body":{"model":"{{{OpenAIModel}}}","messages":[{"role":"user","content":"{{{Prompt}}}"}],"max_tokens":50}}""";

    /// <summary>An Anthropic message batch line: the request sits under <c>params</c>.</summary>
    public static string AnthropicLine(string customId) =>
        $$$"""{"custom_id":"{{{customId}}}","params":{"model":"claude-sonnet-4-5","max_tokens":50,"messages":[{"role":"user","content":"{{{Prompt}}}"}]}}""";

    /// <summary>An input file of <paramref name="count"/> OpenAI lines with distinct custom ids, newline-terminated.</summary>
    public static byte[] OpenAIInput(int count)
    {
        var text = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            text.Append(OpenAILine($"req-{i}")).Append('\n');
        }

        return Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>A chat completion answer of realistic size, as OpenAI sends it.</summary>
    public static byte[] OpenAIAnswer { get; } = Encoding.UTF8.GetBytes(
        "{\"id\":\"chatcmpl-0\",\"object\":\"chat.completion\",\"model\":\"" + OpenAIModel + "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\""
        + new string('x', 200) + "\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":12,\"total_tokens\":32}}");

    /// <summary>A message answer of realistic size, as Anthropic sends it.</summary>
    public static byte[] AnthropicAnswer { get; } = Encoding.UTF8.GetBytes(
        "{\"id\":\"msg_0\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[{\"type\":\"text\",\"text\":\""
        + new string('x', 200) + "\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":20,\"output_tokens\":12}}");

    /// <summary>A 400 answer as OpenAI sends it.</summary>
    public static byte[] OpenAIError { get; } = Encoding.UTF8.GetBytes(
        "{\"error\":{\"message\":\"Invalid value for 'max_tokens': must be a positive integer.\",\"type\":\"invalid_request_error\",\"param\":\"max_tokens\",\"code\":null}}");

    /// <summary>A 400 answer as Anthropic sends it: an error envelope.</summary>
    public static byte[] AnthropicError { get; } = Encoding.UTF8.GetBytes(
        "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"max_tokens: must be greater than or equal to 1\"}}");
}
