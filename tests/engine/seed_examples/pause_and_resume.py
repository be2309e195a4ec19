import asyncio
import logging
from typing import Any

import openai

from tokenflow import ActionContinue, ActionDone, TokenFlowAction, TokenFlowRequestTrajectory, TokenFlowTask

logging.basicConfig(level=logging.DEBUG)

client = openai.AsyncOpenAI()


async def handler(request_trajectory: TokenFlowRequestTrajectory) -> tuple[TokenFlowAction, Any]:
    if request_trajectory.length() >= 3:
        print("Too much retry, stop")
        return ActionDone(), "Too much retry, stop", None

    params = request_trajectory.last().request_params

    try:
        response = await client.chat.completions.create(
            messages=[{"role": "user", "content": params}],
            model="gemini-2.0-flash",
            temperature=0.1,
            max_tokens=4,
        )

        result = response.choices[0].message.content

        return ActionDone(), result, None

    except Exception as e:
        return ActionContinue(params), str(e), None


async def main():
    params = [f"say {i}" for i in range(50)]

    tf_task = TokenFlowTask(request_fn=handler, request_params=params)

    tf_task.run(n_workers=2)

    await asyncio.sleep(5)

    print("Pause task")
    await tf_task.soft_stop()  # or await tf_task.hard_stop() to immediately stop the task
    print("Press enter to continue...")
    input()
    print("Resume task")
    tf_task.run(n_workers=2)

    result = await tf_task.wait_for_done()

    str_result = [r.request_trajectory.last().result for r in result]
    print(str_result)

    print("All done")


if __name__ == "__main__":
    asyncio.run(main())
